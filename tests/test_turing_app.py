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
  assert (data["total"], data["answered"]) == (6, 0)
  # The plan comes from the recorded seed: a wrong seed or a lost shuffle changes it.
  with sqlite3.connect(study.path) as conn:
    seed, = conn.execute("SELECT seed FROM sessions WHERE subject = 's1'").fetchone()
    planned = conn.execute("SELECT i.image_set, i.set_index FROM trials t JOIN images i "
                           "USING (image_id) ORDER BY position").fetchall()
  assert seed == study_lib.subject_seed(3, "s1", "refined")
  assert planned == fx.plan("s1")
  assert sorted(s for s, _ in planned) == ["real"] * 3 + ["refined"] * 3
  given = []
  state = data
  while state["next"]:
    answer = "real" if len(given) % 2 else "refined"
    image = client.get(f"/image/{state['next']['image']}.png")
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
  study_lib.open_study(study.path, sets, fx.TRIALS)  # no seed: the stored one stands
  assert study.meta()["seed"] == 3
  # Finished: starting again is refused, the state says done.
  assert client.post("/api/start", json={"subject": "s1", "arm": "refined"}).status_code == 409
  assert client.get("/api/state", headers={"X-Session-Token": data["token"]}).get_json()["next"] is None


def test_served_png_is_scaled_exactly(client_study):
  # Catches smoothing resamplers (pixels would change), a lost aspect ratio and ids mapped
  # to the wrong set.
  client, study, sets = client_study
  from PIL import Image
  import io
  with sqlite3.connect(study.path) as conn:
    public_id, = conn.execute("SELECT public_id FROM images WHERE image_id = 0").fetchone()
  name, index = study.image(public_id)
  image = np.asarray(Image.open(io.BytesIO(client.get(f"/image/{public_id}.png").data)))
  # display_size 44 on 7x11 images: scale 4, pixels repeated, aspect kept.
  assert image.shape == (28, 44)
  np.testing.assert_array_equal(image[::4, ::4], sets[name].images[index][..., 0])


def test_token_is_handed_out_once_and_the_session_resumes_with_it(client_study):
  # Catches /api/start handing an unfinished session's token to anyone who names its
  # subject id (they could answer in the subject's place), and a second session (new seed,
  # new order) made when a subject comes back.
  client, _, _ = client_study
  first = start(client)
  assert post_answer(client, first["token"], first["next"]["trial_id"]).status_code == 200
  again = client.post("/api/start", json={"subject": "s1", "arm": "refined"})
  assert again.status_code == 409 and "already started" in again.get_json()["error"]
  assert first["token"] not in again.get_data(as_text=True)
  state = client.get("/api/state", headers={"X-Session-Token": first["token"]}).get_json()
  assert state["answered"] == 1 and state["next"]["trial_id"] != first["next"]["trial_id"]
  # A restarted server (a new app on the same database) continues the session and its token.
  app, study, _ = fx.make_app(client_study[1].path)
  restarted = app.test_client()
  assert post_answer(restarted, first["token"], state["next"]["trial_id"]).status_code == 200
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
  # Internal ids are not URLs: an image is named by its random public id only.
  for name in ("0", "14", "-1", "x", "99999999999999999999999", "A" * 22, "A" * 200, "%00"):
    response = client.get(f"/image/{name}.png")
    assert response.status_code == 404 and b"no such image" in response.data, name


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
    plan = fx.plan(subject)
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


def test_two_studies_made_by_the_same_command_differ(tmp_path):
  # Catches image ids derived from a seed in the code (the default --seed=0 made every
  # study's real-image ids public knowledge).
  sets = fx.tiny_sets()
  studies = [study_lib.open_study(str(tmp_path / f"s{i}.sqlite"), sets, fx.TRIALS) for i in range(2)]
  seeds = [s.meta()["seed"] for s in studies]
  assert seeds[0] != seeds[1]

  def real_names(study):
    with sqlite3.connect(study.path) as conn:
      return (sorted(conn.execute("SELECT image_id FROM images WHERE image_set = 'real'")),
              sorted(conn.execute("SELECT public_id FROM images WHERE image_set = 'real'")))

  first, second = map(real_names, studies)
  assert first[0] != second[0] and not set(first[1]) & set(second[1])
  # The seed is kept in the database: reopening without one keeps it.
  study_lib.open_study(studies[0].path, sets, fx.TRIALS)
  assert studies[0].meta()["seed"] == seeds[0]


def test_a_whole_session_reveals_nothing_about_the_truth(client_study):
  # Reads everything a participant's browser receives in a whole session of each arm: the
  # page, every JSON state, every image URL and its headers. None of it may name a set, an
  # index or a truth, and the images' URLs must not order real before fake or vice versa.
  client, study, sets = client_study
  page = client.get("/").get_data(as_text=True)
  script = client.get("/static/app.js").get_data(as_text=True)
  seen = []
  for arm in ("refined", "synthetic"):
    state = start(client, "p1", arm)
    token = state.pop("token")
    while True:
      assert set(state) == {"subject", "arm", "total", "answered", "next"}
      if not state["next"]:
        break
      assert set(state["next"]) == {"trial_id", "position", "image"}
      name = state["next"]["image"]
      assert study_lib.PUBLIC_ID_PATTERN.fullmatch(name), name
      image = client.get(f"/image/{name}.png")
      assert image.status_code == 200
      seen.append((name, dict(image.headers)))
      state = post_answer(client, token, state["next"]["trial_id"], "real").get_json()
  truths = {a["public_id"]: a["image_set"] for a in study.answers()}
  assert len(seen) == len(truths) == 10
  # Same headers for every image whatever its set (length aside).
  headers = {tuple(sorted((k, v) for k, v in h.items() if k != "Content-Length")) for _, h in seen}
  assert len(headers) == 1
  for text in (page, script):
    for name, _ in seen:
      assert name not in text
    for word in ("image_set", "set_index", "truth", "image_id"):
      assert word not in text
  # Across many fresh studies, the lexicographic order of the URLs says nothing: the real
  # images' names are not all before (or all after) the fake ones in most studies.
  separated = 0
  for i in range(20):
    s = study_lib.open_study(str(study.path) + f".{i}", sets, fx.TRIALS)
    with sqlite3.connect(s.path) as conn:
      rows = sorted(conn.execute("SELECT public_id, image_set FROM images"))
    order = [kind for _, kind in rows]
    separated += order == sorted(order) or order == sorted(order, reverse=True)
  assert separated <= 1


def test_no_real_image_twice_per_subject_across_arms(tmp_path):
  # Catches arms drawing real images independently from one pool: a subject doing both
  # arms would see some real images twice and could answer "real" for them.
  sets = fx.tiny_sets(n=12)
  trials = {"refined": (7, 3), "synthetic": (5, 2)}
  app, study, _ = fx.make_app(tmp_path / "s.sqlite", sets, trials)
  client = app.test_client()
  for subject in [f"s{i}" for i in range(15)]:
    for arm in ("refined", "synthetic"):
      state = start(client, subject, arm)
      token = state["token"]
      while state["next"]:
        state = post_answer(client, token, state["next"]["trial_id"], "real").get_json()
    real = [a["set_index"] for a in study.answers() if a["subject"] == subject and a["image_set"] == "real"]
    assert len(real) == 12 and len(set(real)) == 12, (subject, real)
  # A real set too small for both arms without repeats is refused when the study is made.
  with pytest.raises(ConfigError, match="sees each real image at most once"):
    study_lib.open_study(str(tmp_path / "small.sqlite"), fx.tiny_sets(n=11), trials)


def test_csv_cells_cannot_be_formulas(client_study, tmp_path):
  # Catches subject ids such as "@SUM" or "-2" exported as cells a spreadsheet runs (the
  # subject pattern allows a leading @ or -).
  client, study, _ = client_study
  for subject in ("@SUM", "-2", "ok-1"):
    data = start(client, subject)
    post_answer(client, data["token"], data["next"]["trial_id"], "real")
  _, csv_path = report.write_report(study, str(tmp_path / "rep"))
  import csv as csv_lib
  subjects = [row["subject"] for row in csv_lib.DictReader(open(csv_path))]
  assert subjects == ["'@SUM", "'-2", "ok-1"]
  for cell in ("=1+1", "+1", "\tx", "\rx"):
    assert report.csv_cell(cell) == "'" + cell
  assert report.csv_cell(3) == 3 and report.csv_cell(-3.5) == -3.5
