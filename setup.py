"""simgan_jax: SimGAN (Shrivastava et al., CVPR 2017) in JAX/Flax."""
import pathlib

import setuptools

_REQUIREMENTS = [
    line.split("#")[0].strip()
    for line in pathlib.Path(__file__).with_name("requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip()
]

setuptools.setup(
    name="simgan_jax",
    version="0.1.0",
    description="SimGAN: learning from simulated and unsupervised images, in JAX/Flax.",
    packages=setuptools.find_packages(include=["simgan_jax", "simgan_jax.*"]),
    package_data={"simgan_jax.turing": ["templates/*.html", "static/*"],
                  "simgan_jax.refining": ["pretrained/*/*"], "simgan_jax.native": ["conv.cc"]},
    python_requires=">=3.10",
    install_requires=_REQUIREMENTS,
    extras_require={
        # The visual Turing test's web app (simgan_jax/turing): a well-kept framework
        # rather than hand-written HTTP handling; Jinja templates and werkzeug come with it.
        "turing": ["flask>=3.0"],
        # README's test command: pytest on both cores (pytest-xdist; most tests are bound
        # by single-threaded XLA compilation), the Turing app, and selenium driving
        # Debian's headless chromium in tests/test_turing_browser.py.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "flask>=3.0", "selenium>=4.20"],
    },
)
