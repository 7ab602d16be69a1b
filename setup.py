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
                  "simgan_jax": ["pretrained/*/*"], "simgan_jax.native": ["conv.cc"]},
    python_requires=">=3.10",
    install_requires=_REQUIREMENTS,
)
