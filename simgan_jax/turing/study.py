"""A visual Turing test's state in one SQLite file: images, subjects' sessions, answers.

Tables:

* ``meta``: the study seed, the trial counts of each arm and the specs of the sets;
* ``images``: every image of every set under a shuffled ``image_id`` and a random
  ``public_id`` (the only name a subject's page ever sees: 22 random URL-safe
  characters, so a URL says nothing about the set, the index or the order) with the
  sha256 of its pixels, so a database reopened with other images is refused instead of
  mislabelling answers;
* ``sessions``: one per (subject, arm), with the subject's seed (which draws the
  images and their order, ``trial_plan``) and the token its requests must carry;
* ``trials``: the planned trials of a session in order; ``answer``, ``time_ms``
  (measured in the page, image shown to click) and ``answered_at`` are filled in,
  once, when the subject answers.

Arms: ``refined`` (real vs refined, the paper's 50 + 50 per subject) and the
control ``synthetic`` (real vs synthetic, the paper's 10 + 10). Each answer is its
own committed transaction (WAL, synchronous=FULL), so stopping the server loses
nothing that was answered.

Nothing a subject can know reveals the truth: the study seed is secret (drawn at
random when the database is made and stored in it, so a study is reproducible from
its database, never from the code), image URLs are random, a subject's two arms show
disjoint real images (one permutation of the real set per subject, split between the
arms: a real image seen twice would be recognisable as real), and a session's token
is handed out once, when the session is created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import secrets
import sqlite3
import time
from typing import Iterator

import numpy as np

from simgan_jax.errors import ConfigError, DataError

ARMS = ("refined", "synthetic")
DEFAULT_TRIALS = {"refined": (50, 50), "synthetic": (10, 10)}  # (real, fake) per subject
SUBJECT_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MAX_TIME_MS = 24 * 3600 * 1000
_SCHEMA_VERSION = "2"
PUBLIC_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
  image_id INTEGER PRIMARY KEY, public_id TEXT NOT NULL UNIQUE, image_set TEXT NOT NULL,
  set_index INTEGER NOT NULL, digest TEXT NOT NULL, UNIQUE (image_set, set_index));
CREATE TABLE IF NOT EXISTS sessions (
  session_id INTEGER PRIMARY KEY, subject TEXT NOT NULL, arm TEXT NOT NULL,
  seed INTEGER NOT NULL, token TEXT NOT NULL UNIQUE, started_at REAL NOT NULL,
  UNIQUE (subject, arm));
CREATE TABLE IF NOT EXISTS trials (
  trial_id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions,
  position INTEGER NOT NULL, image_id INTEGER NOT NULL REFERENCES images,
  truth TEXT NOT NULL, answer TEXT, time_ms REAL, answered_at REAL,
  UNIQUE (session_id, position));
"""


class RequestError(Exception):
  """A subject's request that cannot be served; ``status`` is its HTTP code."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


def subject_seed(study_seed: int, subject: str, arm: str) -> int:
  """The recorded seed of a subject's session (``arm``) or of its real-image order
  (``arm="real"``): a hash, so a study is reproducible from its stored seed."""
  digest = hashlib.sha256(f"{study_seed}/{subject}/{arm}".encode()).digest()
  return int.from_bytes(digest[:8], "big") >> 1  # fits SQLite's signed 64-bit INTEGER


def real_indices(study_seed: int, subject: str, arm: str, real_pool: int,
                 trials: dict[str, tuple[int, int]]) -> np.ndarray:
  """The real images of ``subject``'s ``arm``: one permutation of the real set per
  subject, cut into consecutive slices for the arms in ``ARMS`` order, so a subject
  never sees a real image twice across arms."""
  order = np.random.default_rng(subject_seed(study_seed, subject, "real")).permutation(real_pool)
  start = sum(trials[a][0] for a in ARMS[:ARMS.index(arm)] if a in trials)
  return order[start:start + trials[arm][0]]


def trial_plan(seed: int, real: np.ndarray, fake_pool: int, num_fake: int, fake: str
               ) -> list[tuple[str, int]]:
  """``(set, index)`` of each trial in order: the ``real`` indices and ``num_fake``
  images drawn without replacement from the fake pool, shuffled together by ``seed``."""
  rng = np.random.default_rng(seed)
  other = rng.choice(fake_pool, num_fake, replace=False)
  items = [("real", int(i)) for i in real] + [(fake, int(i)) for i in other]
  return [items[i] for i in rng.permutation(len(items))]


def _connect(path: str) -> sqlite3.Connection:
  conn = sqlite3.connect(path, timeout=30, isolation_level=None)  # transactions by hand
  conn.row_factory = sqlite3.Row
  conn.execute("PRAGMA foreign_keys = ON")
  conn.execute("PRAGMA synchronous = FULL")
  return conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
  conn.execute("BEGIN IMMEDIATE")
  try:
    yield conn
  except BaseException:
    conn.execute("ROLLBACK")
    raise
  conn.execute("COMMIT")


@dataclasses.dataclass(frozen=True)
class Study:
  """A study database at ``path``; every call opens its own connection (thread-safe)."""

  path: str

  @contextlib.contextmanager
  def connect(self) -> Iterator[sqlite3.Connection]:
    conn = _connect(self.path)
    try:
      yield conn
    finally:
      conn.close()

  def meta(self) -> dict:
    with self.connect() as conn:
      return {r["key"]: json.loads(r["value"]) for r in conn.execute("SELECT key, value FROM meta")}

  def arms(self) -> dict[str, tuple[int, int]]:
    """{arm: (real trials, fake trials)} of the arms this study runs."""
    return {arm: tuple(c) for arm, c in self.meta()["trials"].items()}

  def num_images(self) -> int:
    with self.connect() as conn:
      return conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]

  def image(self, public_id: str) -> tuple[str, int]:
    """(set, index) of the image a URL names by ``public_id``; 404 when there is none."""
    row = None
    if isinstance(public_id, str) and PUBLIC_ID_PATTERN.fullmatch(public_id):
      with self.connect() as conn:
        row = conn.execute("SELECT image_set, set_index FROM images WHERE public_id = ?",
                           (public_id,)).fetchone()
    if row is None:
      raise RequestError(404, "no such image")
    return row["image_set"], row["set_index"]

  # ------------------------------------------------------------------ sessions and answers

  def start(self, subject, arm) -> dict:
    """A new session of ``subject`` in ``arm``, with its token: the only time the token
    is handed out (409 if the subject has a session in this arm already: it goes on in
    the tab that holds the token, so nobody can take over a session by naming a subject)."""
    if not isinstance(subject, str) or not SUBJECT_PATTERN.fullmatch(subject.strip()):
      raise RequestError(400, "subject id: 1 to 64 letters, digits or _.@- characters")
    subject = subject.strip()
    arms = self.arms()
    if arm not in arms:
      raise RequestError(400, f"arm {arm!r}: this study runs {', '.join(arms)}")
    meta = self.meta()
    with self.connect() as conn, _transaction(conn):
      row = conn.execute("SELECT * FROM sessions WHERE subject = ? AND arm = ?",
                         (subject, arm)).fetchone()
      if row is not None:
        left = conn.execute("SELECT COUNT(*) FROM trials WHERE session_id = ? AND answer IS NULL",
                            (row["session_id"],)).fetchone()[0]
        if not left:
          raise RequestError(409, f"subject {subject!r} has already finished the {arm} arm")
        raise RequestError(409, f"subject {subject!r} has already started the {arm} arm: continue "
                                "in the browser tab where it started (a reload keeps the session)")
      seed = subject_seed(meta["seed"], subject, arm)
      real = real_indices(meta["seed"], subject, arm, meta["set_sizes"]["real"], arms)
      plan = trial_plan(seed, real, meta["set_sizes"][arm], arms[arm][1], arm)
      ids = {(r["image_set"], r["set_index"]): r["image_id"] for r in conn.execute(
          "SELECT image_id, image_set, set_index FROM images WHERE image_set IN ('real', ?)", (arm,))}
      cursor = conn.execute(
          "INSERT INTO sessions (subject, arm, seed, token, started_at) VALUES (?, ?, ?, ?, ?)",
          (subject, arm, seed, secrets.token_urlsafe(24), time.time()))
      session_id = cursor.lastrowid
      conn.executemany(
          "INSERT INTO trials (session_id, position, image_id, truth) VALUES (?, ?, ?, ?)",
          [(session_id, i, ids[item], item[0]) for i, item in enumerate(plan)])
      row = conn.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
    return dict(row)

  def session(self, token) -> dict:
    """The session a token belongs to; 401 without a token, 403 with a wrong one."""
    if not token:
      raise RequestError(401, "missing session token (header X-Session-Token); start a session first")
    with self.connect() as conn:
      row = conn.execute("SELECT * FROM sessions WHERE token = ?", (str(token),)).fetchone()
    if row is None:
      raise RequestError(403, "unknown session token; start the session again with your subject id")
    return dict(row)

  def state(self, session: dict) -> dict:
    """Progress of a session and its next unanswered trial (None when finished)."""
    with self.connect() as conn:
      total, answered = conn.execute(
          "SELECT COUNT(*), COUNT(answer) FROM trials WHERE session_id = ?",
          (session["session_id"],)).fetchone()
      row = conn.execute(
          "SELECT t.trial_id, t.position, i.public_id AS image FROM trials t JOIN images i "
          "USING (image_id) WHERE t.session_id = ? AND t.answer IS NULL "
          "ORDER BY t.position LIMIT 1", (session["session_id"],)).fetchone()
    return {"subject": session["subject"], "arm": session["arm"], "total": total,
            "answered": answered, "next": dict(row) if row else None}

  def answer(self, session: dict, trial_id, answer, time_ms) -> dict:
    """Records ``answer`` to trial ``trial_id`` of ``session`` (once), then the new state."""
    if isinstance(trial_id, bool) or not isinstance(trial_id, int) or not 0 <= trial_id < 2**62:
      raise RequestError(400, f"trial_id: expected an integer, got {trial_id!r}")
    if answer not in ("real", session["arm"]):
      raise RequestError(400, f"answer: expected 'real' or {session['arm']!r}, got {answer!r}")
    if (isinstance(time_ms, bool) or not isinstance(time_ms, (int, float)) or not math.isfinite(time_ms)
        or not 0 <= time_ms <= MAX_TIME_MS):
      raise RequestError(400, f"time_ms: expected milliseconds in [0, {MAX_TIME_MS}], got {time_ms!r}")
    with self.connect() as conn, _transaction(conn):
      row = conn.execute("SELECT session_id, position, answer FROM trials WHERE trial_id = ?",
                         (trial_id,)).fetchone()
      if row is None:
        raise RequestError(404, f"no trial {trial_id}")
      if row["session_id"] != session["session_id"]:
        raise RequestError(403, f"trial {trial_id} belongs to another subject's session")
      if row["answer"] is not None:
        raise RequestError(409, f"trial {trial_id} is already answered; answers cannot be changed")
      current = conn.execute(
          "SELECT MIN(position) FROM trials WHERE session_id = ? AND answer IS NULL",
          (session["session_id"],)).fetchone()[0]
      if row["position"] != current:
        raise RequestError(409, f"trial {trial_id} is not the current trial; answer in order")
      conn.execute("UPDATE trials SET answer = ?, time_ms = ?, answered_at = ? WHERE trial_id = ?",
                   (answer, float(time_ms), time.time(), trial_id))
    return self.state(session)

  def answers(self) -> list[dict]:
    """Every given answer, by session and position, with its image's set and index."""
    with self.connect() as conn:
      return [dict(r) for r in conn.execute(
          "SELECT s.subject, s.arm, s.seed, t.trial_id, t.position, t.image_id, i.public_id, i.image_set, "
          "i.set_index, t.truth, t.answer, t.time_ms, t.answered_at FROM trials t "
          "JOIN sessions s USING (session_id) JOIN images i USING (image_id) "
          "WHERE t.answer IS NOT NULL ORDER BY s.session_id, t.position")]

  def sessions(self) -> list[dict]:
    with self.connect() as conn:
      return [dict(r) for r in conn.execute(
          "SELECT s.subject, s.arm, s.seed, COUNT(t.trial_id) AS total, COUNT(t.answer) AS answered "
          "FROM sessions s JOIN trials t USING (session_id) GROUP BY s.session_id "
          "ORDER BY s.session_id")]


def open_study(path: str, sets: dict, trials: dict[str, tuple[int, int]] | None = None,
               seed: int | None = None) -> Study:
  """Creates the study database at ``path`` for ``sets`` ({name: ImageSet}, with ``real``
  and at least one arm's set), or reopens it after checking it holds the same images,
  trial counts and seed. ``seed=None`` (the default) draws a secret random study seed
  when the database is made (and accepts the stored one when it is reopened); give a
  seed only to remake a study from the seed stored in its database."""
  if "real" not in sets or not any(arm in sets for arm in ARMS):
    raise ConfigError(f"a study needs a real set and one of {', '.join(ARMS)}; got {', '.join(sets)}")
  trials = {arm: tuple(c) for arm, c in (trials or DEFAULT_TRIALS).items() if arm in sets}
  for arm, (n_real, n_fake) in trials.items():
    for name, n in (("real", n_real), (arm, n_fake)):
      if n < 1 or n > len(sets[name]):
        raise ConfigError(f"{arm} arm: {n} {name} trials per subject, but the {name} set "
                          f"({sets[name].spec}) has {len(sets[name])} images; give 1 to {len(sets[name])}")
  needed = sum(n_real for n_real, _ in trials.values())
  if needed > len(sets["real"]):
    raise ConfigError(f"a subject does {' and '.join(trials)} and sees each real image at most once: "
                      f"{needed} real trials need {needed} real images, but the real set "
                      f"({sets['real'].spec}) has {len(sets['real'])}; give more real images or fewer trials")
  new_seed = secrets.randbits(62) if seed is None else int(seed)
  meta = {"schema": _SCHEMA_VERSION, "seed": new_seed, "trials": trials,
          "set_sizes": {name: len(s) for name, s in sets.items()},
          "specs": {name: s.spec for name, s in sets.items()},
          "image_shape": list(next(iter(sets.values())).images.shape[1:])}
  digests = [(name, i, s.digest(i)) for name, s in sets.items() for i in range(len(s))]
  try:
    conn = _connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
  except sqlite3.Error as e:
    raise DataError(f"{path}: cannot open as a study database ({e})") from None
  try:
    with _transaction(conn):
      for statement in _SCHEMA.split(";"):  # executescript would commit halfway
        if statement.strip():
          conn.execute(statement)
      stored = {r["key"]: json.loads(r["value"]) for r in conn.execute("SELECT key, value FROM meta")}
      if not stored:
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                         [(k, json.dumps(v)) for k, v in meta.items()])
        ids = np.random.default_rng(new_seed).permutation(len(digests))
        public = _public_ids(len(digests))
        conn.executemany("INSERT INTO images (image_id, public_id, image_set, set_index, digest) "
                         "VALUES (?, ?, ?, ?, ?)",
                         [(int(ids[j]), public[j], *d) for j, d in enumerate(digests)])
      else:
        if seed is None:
          meta["seed"] = stored.get("seed")
        _check_same(path, stored, meta, conn, digests)
  finally:
    conn.close()
  return Study(path)


def _public_ids(n: int) -> list[str]:
  """``n`` distinct random URL names (128 random bits each), from the OS's CSPRNG."""
  ids: set[str] = set()
  while len(ids) < n:
    ids.add(secrets.token_urlsafe(16))
  return list(ids)


def _check_same(path, stored, meta, conn, digests) -> None:
  for key in ("schema", "seed", "trials", "set_sizes"):
    old = stored.get(key)
    new = json.loads(json.dumps(meta[key]))
    if old != new:
      raise DataError(f"{path}: made with {key} = {old}, now {new}; use a new --db for a new study")
  rows = {(r["image_set"], r["set_index"]): r["digest"] for r in conn.execute(
      "SELECT image_set, set_index, digest FROM images")}
  changed = [f"{name}[{i}]" for name, i, d in digests if rows.get((name, i)) != d]
  if changed or len(rows) != len(digests):
    raise DataError(f"{path}: made with other images ({len(changed)} differ, e.g. "
                    f"{', '.join(changed[:3]) or 'a set removed'}); use a new --db for a new study")


def open_existing(path: str) -> Study:
  """A study database that must already exist (for reports)."""
  if not os.path.exists(path):
    raise DataError(f"{path}: no such study database")
  study = Study(path)
  try:
    if "seed" not in study.meta():
      raise DataError(f"{path}: not a study database (no meta)")
  except sqlite3.DatabaseError as e:
    raise DataError(f"{path}: not a study database ({e})") from None
  return study
