"""The Turing-test app in a real headless Chromium, driven by Selenium, served on 127.0.0.1.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and the
``selenium`` package. Without them the test is skipped, except under ``CI=true``,
where it fails: CI must run it.
"""

import os
import shutil

import pytest

from simgan_jax.turing import report
from simgan_jax.turing import stats
from simgan_jax.turing import study as study_lib
from tests import turing_fixtures as fx

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
try:
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.support.ui import WebDriverWait
  MISSING = [] if CHROMIUM and CHROMEDRIVER else ["chromium and chromium-driver (apt-get install -y "
                                                  "chromium chromium-driver)"]
except ImportError:
  MISSING = ["the selenium package (pip install selenium)"]


@pytest.fixture
def browser():
  if MISSING:
    message = f"needs {MISSING[0]}"
    if os.environ.get("CI") == "true":
      pytest.fail(f"CI=true: the browser test must run but it {message}")
    pytest.skip(message)
  from simgan_jax.turing import screenshots

  driver = screenshots.chrome_driver()
  yield driver
  driver.quit()


@pytest.fixture
def served(tmp_path):
  from simgan_jax.turing import screenshots

  app, study, _ = fx.make_app(tmp_path / "study.sqlite")
  with screenshots.serving(app) as url:
    yield url, study


def _wait_for_trial(driver, answered):
  def ready(d):
    count = d.find_element(By.ID, "count").text
    button = d.find_element(By.ID, "answer-real")
    return d.find_element(By.ID, "trial").is_displayed() and count.startswith(f"{answered} /") \
        and button.is_enabled()
  WebDriverWait(driver, 10).until(ready)
  src = driver.find_element(By.ID, "image").get_attribute("src")
  return src.rsplit("/", 1)[1].removesuffix(".png")


def test_a_subject_answers_a_session_with_a_reload(browser, served, tmp_path):
  url, study = served
  browser.get(url + "/")
  browser.find_element(By.ID, "subject").send_keys("alice")
  browser.find_element(By.ID, "start-button").click()
  # Answers alternate between the buttons and the keyboard (R / F / arrows).
  answers = ["real", "refined", "refined", "real", "refined", "real"]
  ways = ["click", "key", "arrow", "click", "key", "arrow"]
  shown = []
  for i, (answer, way) in enumerate(zip(answers, ways)):
    if i == 3:
      # Halfway: a reload resumes at the next unanswered trial.
      browser.refresh()
    shown.append(_wait_for_trial(browser, i))
    assert browser.find_element(By.ID, "progress").get_attribute("value") == str(i)
    if way == "click":
      browser.find_element(By.ID, "answer-real" if answer == "real" else "answer-fake").click()
    else:
      key = {"key": {"real": "r", "refined": "f"}, "arrow": {"real": "\ue012", "refined": "\ue014"}}[way]
      ActionChains(browser).send_keys(key[answer]).perform()
    # The answer is committed before the next step (a reload that aborts an answer in flight
    # rightly shows that trial again, which would make this test flaky).
    WebDriverWait(browser, 10).until(
        lambda d, n=i + 1: d.find_element(By.ID, "progress").get_attribute("value") == str(n))
  WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "done").is_displayed())
  assert "All 6 answers are recorded" in browser.find_element(By.ID, "done-text").text
  assert not browser.find_element(By.ID, "trial").is_displayed()

  # The database holds exactly these answers, for the planned images, in order.
  seed = study_lib.subject_seed(3, "alice", "refined")
  plan = fx.plan("alice")
  rows = study.answers()
  assert [r["answer"] for r in rows] == answers
  assert [r["public_id"] for r in rows] == shown
  assert [(r["image_set"], r["set_index"]) for r in rows] == plan
  assert all(r["subject"] == "alice" and r["seed"] == seed and 0 <= r["time_ms"] < 10_000 for r in rows)

  # The report's figures are those of these answers.
  correct = sum(truth == answer for (truth, _), answer in zip(plan, answers))
  expected = stats.summarize(correct, 6)
  md_path, csv_path = report.write_report(study, str(tmp_path / "report"))
  text = open(md_path).read()
  row = "| this study | " + " | ".join(report.summary_cells(expected)) + " |"
  assert row in text, (row, text)
  assert len(open(csv_path).read().splitlines()) == 7

  # The results page shows the same accuracy.
  browser.get(f"{url}/results?key={fx.RESULTS_KEY}")
  page = browser.find_element(By.TAG_NAME, "body").text
  assert "Real vs refined" in page and f"{100 * correct / 6:.1f}%" in page
