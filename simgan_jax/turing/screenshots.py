"""Screenshots of the Turing-test pages in headless Chromium (for the README).

``take_screenshots`` serves a study in a fresh database on 127.0.0.1, lets
``demo`` subjects answer at random through the API (so the results page has
numbers: they are coin flips, not people), photographs the results page, then the
trial page of one more demo subject seven trials in (it prints which image that
page shows). Needs Debian's
``chromium`` and ``chromium-driver`` and the ``selenium`` package.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import urllib.request

import numpy as np

from simgan_jax.errors import ConfigError
from simgan_jax.turing import app as app_lib
from simgan_jax.turing import study as study_lib


def chrome_driver(width: int = 900, height: int = 800):
  """A headless Chromium driven by Selenium (Debian's ``chromium`` + ``chromedriver``)."""
  from selenium import webdriver  # pylint: disable=g-import-not-at-top

  chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
  driver_path = shutil.which("chromedriver")
  if not chromium or not driver_path:
    raise FileNotFoundError("chromium and chromedriver not found; apt-get install -y chromium chromium-driver")
  options = webdriver.ChromeOptions()
  options.binary_location = chromium
  for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                   f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
                   "--hide-scrollbars"):
    options.add_argument(argument)
  driver = webdriver.Chrome(options=options,
                            service=webdriver.ChromeService(executable_path=driver_path))
  driver.set_page_load_timeout(30)
  return driver


@contextlib.contextmanager
def serving(app):
  """``app`` served on 127.0.0.1 (a free port) in a thread; yields its base URL."""
  from werkzeug import serving as werkzeug_serving  # pylint: disable=g-import-not-at-top

  server = werkzeug_serving.make_server("127.0.0.1", 0, app, threaded=True)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_port}"
  finally:
    server.shutdown()
    thread.join(5)


def _post(url: str, body: dict, token: str | None = None) -> dict:
  headers = {"Content-Type": "application/json"}
  if token:
    headers[app_lib.TOKEN_HEADER] = token
  request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
  with urllib.request.urlopen(request) as response:
    return json.load(response)


def answer_at_random(url: str, subject: str, arm: str, rng: np.random.Generator,
                     limit: int | None = None) -> dict:
  """A demo subject answering ``limit`` trials (all when None) by coin flips."""
  state = _post(f"{url}/api/start", {"subject": subject, "arm": arm})
  token, done = state["token"], 0
  while state["next"] and (limit is None or done < limit):
    answer = "real" if rng.random() < 0.5 else arm
    state = _post(f"{url}/api/answer", {"trial_id": state["next"]["trial_id"], "answer": answer,
                                        "time_ms": float(rng.uniform(600, 2500))}, token)
    done += 1
  return state


def take_screenshots(db: str, sets: dict, out_dir: str, trials=None, demo_subjects: int = 3,
                     seed: int | None = None) -> tuple[str, str]:
  """Writes ``turing_trial.png`` and ``turing_results.png`` to ``out_dir``; ``db`` must be new."""
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top

  if os.path.exists(db):
    raise ConfigError(f"--db={db}: exists; screenshots need a new database (demo answers go into it)")
  study = study_lib.open_study(db, sets, trials, seed)
  app = app_lib.create_app(study, sets)
  rng = np.random.default_rng(study.meta()["seed"])
  os.makedirs(out_dir, exist_ok=True)
  paths = (os.path.join(out_dir, "turing_trial.png"), os.path.join(out_dir, "turing_results.png"))
  with serving(app) as url:
    for arm in study.arms():
      for i in range(demo_subjects):
        answer_at_random(url, f"demo-{i + 1}", arm, rng)
    driver = chrome_driver()
    try:
      driver.get(f"{url}/results?key={app.config['RESULTS_KEY']}")
      driver.set_window_size(1100, 200)  # scrollHeight is then the page's own height
      height = driver.execute_script("return document.documentElement.scrollHeight "
                                     "+ window.outerHeight - window.innerHeight")
      driver.set_window_size(1100, min(int(height), 4000))
      driver.save_screenshot(paths[1])
      # The photographed subject has answered a few trials, so the progress bar shows.
      answer_at_random(url, "demo-screenshot", "refined", rng, limit=7)
      driver.set_window_size(900, 660)
      driver.get(url + "/")
      driver.find_element(By.ID, "subject").send_keys("demo-screenshot")
      driver.find_element(By.ID, "start-button").click()
      WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "answer-real").is_enabled())
      driver.save_screenshot(paths[0])
      src = driver.find_element(By.ID, "image").get_attribute("src")
    finally:
      driver.quit()
  public_id = src.rsplit("/", 1)[1].removesuffix(".png")
  name, index = study.image(public_id)
  print(f"the trial page shows image {public_id}: {name} image {index} of {sets[name].spec}")
  return paths
