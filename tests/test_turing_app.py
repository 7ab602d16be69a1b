"""The Turing-test app through Flask's test client: the flow, the database, bad requests."""

import json
import sqlite3

import numpy as np
import pytest

from simgan_jax.errors import ConfigError, DataError
from simgan_jax.turing import report
from simgan_jax.turing import study as study_lib
from tests import turing_fixtures as fx


@pytest.fixture
def client_study(tmp_path):
  app, study, sets = fx.make_app(tmp_path / "study.sqlite")
  return app.test_client(), study, sets


def start(client, subject="s1", arm="refined"):
  response = client.post("/api/start", json={"subject": subject, "arm": arm})
  assert response.status_code == 200, response.get_json()
  return response.get_json()


def post_answer(client, token, trial_id, answer="real", time_ms=500.0):
  return client.post("/api/answer", json={"trial_id": trial_id, "answer": answer, "time_ms": time_ms},
                     headers={"X-Session-Token": token})


def test_session_flow_and_database(client_study):
  client, study, sets = client_study
  data = start(client)
  assert (data["total"], data["answered"], data["resumed"]) == (6, 0, False)
  # The plan comes from the recorded seed: a wrong seed or a lost shuffle changes it.
  with sqlite3.connect(study.path) as conn:
    seed, = conn.execute("SELECT seed FROM sessions WHERE subject = 's1'").fetchone()
    planned = conn.execute("SELECT i.image_set, i.set_index FROM trials t JOIN images i "
                           "USING (image_id) ORDER BY position").fetchall()
  assert seed == study_lib.subject_seed(3, "s1", "refined")
  assert planned == study_lib.trial_plan(seed, (5, 5), (3, 3), "refined")
  assert sorted(s for s, _ in planned) == ["real"] * 3 + ["refined"] * 3
  given = []
  state = data
  while state["next"]:
    answer = "real" if len(given) % 2 else "refined"
    image = client.get(f"/image/{state['next']['image_id']}.png")
    assert image.status_code == 200 and image.data[:8] == b"\x89PNG\r\n\x1a\n"
    response = post_answer(client, data["token"], state["next"]["trial_id"], answer, 100.0 + len(given))
    assert response.status_code == 200, response.get_json()
    given.append(answer)
    state = response.get_json()
    assert state["answered"] == len(given)
  answers = study.answers()
  assert [a["answer"] for a in answers] == given
  assert [a["time_ms"] for a in answers] == [100.0 + i for i in range(6)]
  assert [(a["image_set"], a["set_index"]) for a in answers] == planned
  # Restarting the study on the same sets keeps every answer; other images are refused.
  study_lib.open_study(study.path, sets, fx.TRIALS, seed=3)
  assert len(study.answers()) == 6
  other = fx.tiny_sets()
  other["real"].images[0, 0, 0, 0] ^= 1
  with pytest.raises(DataError, match="other images"):
    study_lib.open_study(study.path, other, fx.TRIALS, seed=3)
  with pytest.raises(DataError, match="seed"):
    study_lib.open_study(study.path, sets, fx.TRIALS, seed=4)
  # Finished: starting again is refused, the state says done.
  assert client.post("/api/start", json={"subject": "s1", "arm": "refined"}).status_code == 409
  assert client.get("/api/state", headers={"X-Session-Token": data["token"]}).get_json()["next"] is None


def test_served_png_is_scaled_exactly(client_study):
  # Catches smoothing resamplers (pixels would change), a lost aspect ratio and ids mapped
  # to the wrong set.
  client, study, sets = client_study
  from PIL import Image
  import io
  name, index = study.image(0)
  image = np.asarray(Image.open(io.BytesIO(client.get("/image/0.png").data)))
  # display_size 44 on 7x11 images: scale 4, pixels repeated, aspect kept.
  assert image.shape == (28, 44)
  np.testing.assert_array_equal(image[::4, ::4], sets[name].images[index][..., 0])


def test_resume_returns_the_same_session(client_study):
  # Catches a second session (new seed, new order) made when a subject comes back.
  client, _, _ = client_study
  first = start(client)
  assert post_answer(client, first["token"], first["next"]["trial_id"]).status_code == 200
  again = start(client)
  assert again["resumed"] and again["token"] == first["token"]
  assert again["answered"] == 1 and again["next"]["trial_id"] != first["next"]["trial_id"]
  # A restarted server (a new app on the same database) continues the session and its token.
  app, study, _ = fx.make_app(client_study[1].path)
  restarted = app.test_client()
  assert post_answer(restarted, first["token"], again["next"]["trial_id"]).status_code == 200
  assert len(study.answers()) == 2


def test_unknown_subject_token_and_arm(client_study):
  # Sessions are addressed by token: an unknown subject is an unknown token.
  client, _, _ = client_study
  # No session for this token: a subject who never started.
  response = client.get("/api/state", headers={"X-Session-Token": "nobody"})
  assert response.status_code == 403 and "unknown session token" in response.get_json()["error"]
  response = client.post("/api/start", json={"subject": "bad id!", "arm": "refined"})
  assert response.status_code == 400 and "subject id" in response.get_json()["error"]
  response = client.post("/api/start", json={"subject": "s2", "arm": "cats"})
  assert response.status_code == 400 and "arm" in response.get_json()["error"]


def test_missing_and_wrong_token(client_study):
  # Catches an answer endpoint that trusts the trial id alone.
  client, study, _ = client_study
  data = start(client)
  trial = data["next"]["trial_id"]
  response = client.post("/api/answer", json={"trial_id": trial, "answer": "real", "time_ms": 1})
  assert response.status_code == 401 and "missing session token" in response.get_json()["error"]
  response = post_answer(client, "not-the-token", trial)
  assert response.status_code == 403
  assert study.answers() == []


def test_answer_twice_and_out_of_order(client_study):
  # Catches an UPDATE without "answer IS NULL" (a second answer would overwrite the first).
  client, study, _ = client_study
  data = start(client)
  trial = data["next"]["trial_id"]
  assert post_answer(client, data["token"], trial, "real").status_code == 200
  response = post_answer(client, data["token"], trial, "refined")
  assert response.status_code == 409 and "already answered" in response.get_json()["error"]
  assert [a["answer"] for a in study.answers()] == ["real"]  # the first answer stands
  with sqlite3.connect(study.path) as conn:
    last, = conn.execute("SELECT MAX(trial_id) FROM trials").fetchone()
  response = post_answer(client, data["token"], last)
  assert response.status_code == 409 and "not the current trial" in response.get_json()["error"]


def test_another_subjects_trial(client_study):
  # Catches an ownership check missing: b's token must not answer a's trial.
  client, study, _ = client_study
  a, b = start(client, "a"), start(client, "b")
  response = post_answer(client, b["token"], a["next"]["trial_id"])
  assert response.status_code == 403 and "another subject" in response.get_json()["error"]
  response = post_answer(client, a["token"], 10**6)
  assert response.status_code == 404 and "no trial" in response.get_json()["error"]
  assert study.answers() == []


def test_bad_image_ids(client_study):
  # Catches an unchecked index into the sets (IndexError -> 500) and negative indexing.
  client, _, _ = client_study
  response = client.get("/image/15.png")  # 3 sets of 5 images: ids 0..14
  assert response.status_code == 404 and b"ids run from 0 to 14" in response.data
  assert client.get("/image/-1.png").status_code == 404
  assert client.get("/image/x.png").status_code == 404
  # An id past SQLite's 64-bit INTEGER: a 404, not an OverflowError turned into a 500.
  assert client.get("/image/99999999999999999999999.png").status_code == 404


def test_malformed_requests(client_study):
  # Catches request.json raising (a 500 or an HTML error page), form posts accepted
  # (cross-site forms), unvalidated fields written to the database.
  client, study, _ = client_study
  data = start(client)
  token = {"X-Session-Token": data["token"]}
  response = client.post("/api/answer", data="{not json", content_type="application/json", headers=token)
  assert response.status_code == 400 and "not a JSON object" in response.get_json()["error"]
  response = client.post("/api/answer", data=json.dumps([1, 2]), content_type="application/json",
                         headers=token)
  assert response.status_code == 400
  response = client.post("/api/answer", data="trial_id=1", headers=token)  # a plain HTML form
  assert response.status_code == 415
  trial = data["next"]["trial_id"]
  for body, field in (({"trial_id": "1", "answer": "real", "time_ms": 1}, "trial_id"),
                      ({"trial_id": trial, "answer": "synthetic", "time_ms": 1}, "answer"),
                      ({"trial_id": trial, "answer": "real", "time_ms": -5}, "time_ms"),
                      ({"trial_id": trial, "answer": "real"}, "time_ms"),
                      ({"trial_id": 10**30, "answer": "real", "time_ms": 1}, "trial_id")):
    response = client.post("/api/answer", json=body, headers=token)
    assert response.status_code == 400 and field in response.get_json()["error"], body
  response = client.post("/api/start", json={"subject": "s9"}, headers={"Origin": "http://evil.example"})
  assert response.status_code == 403 and "cross-origin" in response.get_json()["error"]
  assert client.get("/api/answer").status_code == 405  # state changes by POST only
  assert client.post("/api/start", data="x" * 20000, content_type="application/json").status_code == 413
  assert study.answers() == []


def test_results_need_the_key(client_study):
  # Subjects must not see scores (that is feedback): the page needs the experimenter's key.
  client, _, _ = client_study
  assert client.get("/results").status_code == 403
  assert client.get("/results?key=wrong").status_code == 403
  page = client.get(f"/results?key={fx.RESULTS_KEY}")
  assert page.status_code == 200 and b"Real vs refined" in page.data and b"51.7%" in page.data


def test_report_figures(client_study, tmp_path):
  client, study, _ = client_study
  # Subject a always says "real": right on real trials only (3 of 6). Subject b is right every
  # time (truths read from the plan, not from the database under test).
  for subject in ("a", "b"):
    data = start(client, subject)
    seed = study_lib.subject_seed(3, subject, "refined")
    plan = study_lib.trial_plan(seed, (5, 5), (3, 3), "refined")
    state = data
    for truth, _ in plan:
      answer = "real" if subject == "a" else truth
      state = post_answer(client, data["token"], state["next"]["trial_id"], answer).get_json()
  control = start(client, "a", "synthetic")
  state = control
  while state["next"]:
    state = post_answer(client, control["token"], state["next"]["trial_id"], "synthetic").get_json()
  results = {r.arm: r for r in report.arm_results(study)}
  refined = results["refined"]
  assert (refined.summary.correct, refined.summary.n) == (9, 12)
  assert refined.confusion == {"real": {"real": 6, "refined": 0}, "refined": {"real": 3, "refined": 3}}
  assert {s: (v.correct, v.n) for s, v in refined.subjects.items()} == {"a": (3, 6), "b": (6, 6)}
  assert refined.summary.p_one_sided == pytest.approx((220 + 66 + 12 + 1) / 4096)
  synthetic = results["synthetic"]
  assert (synthetic.summary.correct, synthetic.summary.n) == (2, 4)
  md_path, csv_path = report.write_report(study, str(tmp_path / "rep"))
  text = open(md_path).read()
  assert "| this study | 12 | 9 | 75.0% |" in text and "| paper | 1000 | 517 | 51.7% |" in text
  assert "| truth refined | 3 | 3 |" in text and "| paper: truth real | 224 | 276 |" in text
  assert "| this study | 4 | 2 | 50.0% |" in text and "| paper | 200 | 162 | 81.0% |" in text
  rows = open(csv_path).read().splitlines()
  assert len(rows) == 1 + 12 + 4 and rows[0].startswith("subject,arm,seed,trial_id")


def test_study_config_errors(tmp_path):
  sets = fx.tiny_sets()
  with pytest.raises(ConfigError, match="has 5 images; give 1 to 5"):
    study_lib.open_study(str(tmp_path / "a.sqlite"), sets, {"refined": (6, 3)})
  with pytest.raises(ConfigError, match="needs a real set"):
    study_lib.open_study(str(tmp_path / "b.sqlite"), {"refined": sets["refined"]})
  with pytest.raises(DataError, match="no such study"):
    study_lib.open_existing(str(tmp_path / "missing.sqlite"))
  (tmp_path / "junk.sqlite").write_text("not sqlite" * 100)
  with pytest.raises(DataError, match="cannot open as a study database"):
    study_lib.open_study(str(tmp_path / "junk.sqlite"), sets, fx.TRIALS)


def test_launcher_report_and_errors(client_study, tmp_path):
  import subprocess
  import sys
  from tests.conftest import REPO

  client, study, _ = client_study
  data = start(client)
  post_answer(client, data["token"], data["next"]["trial_id"], "real")
  script = f"{REPO}/launch/turing_test.py"
  done = subprocess.run([sys.executable, script, "--report", f"--db={study.path}",
                         f"--out={tmp_path / 'r'}"], capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert "| this study | 1 | " in (tmp_path / "r.md").read_text()
  assert len((tmp_path / "r.csv").read_text().splitlines()) == 2
  # Bad invocations: one line on stderr, no traceback.
  for flags, message in ((["--report", f"--db={tmp_path / 'none.sqlite'}"], "no such study database"),
                         ([f"--db={tmp_path / 'x.sqlite'}"], "--real and --refined")):
    done = subprocess.run([sys.executable, script, *flags], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
