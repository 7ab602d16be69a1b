"""Runs a visual Turing test: loads the sets, opens the database, serves the app."""

from __future__ import annotations

import sys

from simgan_jax.turing import app as app_lib
from simgan_jax.turing import images as images_lib
from simgan_jax.turing import report as report_lib
from simgan_jax.turing import study as study_lib

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def prepare(db: str, specs: dict[str, str | None], num_images: int,
            trials: dict[str, tuple[int, int]] | None = None, seed: int | None = None, data_dir: str = "",
            cache_dir: str = "") -> tuple[study_lib.Study, dict[str, images_lib.ImageSet]]:
  """The study at ``db`` and its image sets ({name: spec}, None or '' for an unused arm)."""
  sets = images_lib.load_sets({k: v for k, v in specs.items() if v}, num_images, data_dir, cache_dir)
  return study_lib.open_study(db, sets, trials, seed), sets


def serve(db: str, specs: dict[str, str | None], num_images: int,
          trials: dict[str, tuple[int, int]] | None = None, seed: int | None = None, host: str = "127.0.0.1",
          port: int = 8000, results_key: str | None = None,
          display_size: int = images_lib.DEFAULT_DISPLAY_SIZE, data_dir: str = "",
          cache_dir: str = "") -> None:
  """Serves the study until interrupted (every answer is already committed)."""
  from werkzeug import serving  # pylint: disable=g-import-not-at-top

  study, sets = prepare(db, specs, num_images, trials, seed, data_dir, cache_dir)
  app = app_lib.create_app(study, sets, results_key, display_size)
  if host not in LOCAL_HOSTS:
    print(f"WARNING: serving on {host}: anyone who can reach this address can take part or "
          "add answers; the app has no login and speaks plain HTTP", file=sys.stderr)
  shown = f"[{host}]" if ":" in host else host
  for name, image_set in sets.items():
    print(f"{name}: {len(image_set)} images from {image_set.spec}")
  print(f"study: {db} (secret study seed stored in it); arms: {', '.join(f'{a} {r}+{f}' for a, (r, f) in study.arms().items())}")
  print(f"subjects: http://{shown}:{port}/")
  print(f"results:  http://{shown}:{port}/results?key={app.config['RESULTS_KEY']}")
  serving.run_simple(host, port, app, threaded=True)


def screenshots(db: str, specs: dict[str, str | None], num_images: int,
                trials: dict[str, tuple[int, int]] | None, seed: int | None, out_dir: str,
                data_dir: str = "", cache_dir: str = "") -> tuple[str, str]:
  """The README's screenshots of a new study at ``db`` (see ``screenshots.take_screenshots``)."""
  from simgan_jax.turing import screenshots as screenshots_lib  # pylint: disable=g-import-not-at-top

  sets = images_lib.load_sets({k: v for k, v in specs.items() if v}, num_images, data_dir, cache_dir)
  return screenshots_lib.take_screenshots(db, sets, out_dir, trials, seed=seed)


def write_report(db: str, prefix: str) -> tuple[str, str]:
  """``PREFIX.md`` and ``PREFIX.csv`` of the study at ``db``."""
  return report_lib.write_report(study_lib.open_existing(db), prefix)
