"""The visual Turing test as a Flask app: a subject's page, its JSON API, the results page.

Routes:

* ``GET /``: the subject's page (static HTML/CSS/JS, no build step);
* ``POST /api/start`` ``{"subject": ID, "arm": "refined"|"synthetic"}``: starts the
  session and returns its token with the state (once: a session already started is
  continued in its tab, whose sessionStorage holds the token);
* ``GET /api/state``, ``POST /api/answer`` ``{"trial_id", "answer", "time_ms"}``:
  both need the header ``X-Session-Token``;
* ``GET /image/<public_id>.png``: an image by its random name, scaled up;
* ``GET /results?key=KEY``, ``/results.csv?key=KEY``: for the experimenter only
  (a subject seeing scores would get feedback).

Safety: POST bodies must be JSON (``Content-Type: application/json``: a page on
another site cannot send that without a CORS preflight, which this app never
grants), requests with a foreign ``Origin`` are refused, answers need the
session's token (kept in the tab's sessionStorage, never in a cookie), and every
error is a 4xx with a one-line JSON or text message; no traceback is ever shown.
"""

from __future__ import annotations

import functools
import hmac
import os
import secrets

import flask
from werkzeug import exceptions

from simgan_jax.turing import images as images_lib
from simgan_jax.turing import report as report_lib
from simgan_jax.turing import study as study_lib
from simgan_jax.turing.study import RequestError

_HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN_HEADER = "X-Session-Token"


def create_app(study: study_lib.Study, sets: dict[str, images_lib.ImageSet],
               results_key: str | None = None, display_size: int = images_lib.DEFAULT_DISPLAY_SIZE
               ) -> flask.Flask:
  """The app serving ``study`` with images from ``sets`` ({name: ImageSet}, those the
  study was opened with); the results pages need ``results_key`` (random if None:
  read it from ``app.config["RESULTS_KEY"]``)."""
  app = flask.Flask(__name__, template_folder=os.path.join(_HERE, "templates"),
                    static_folder=os.path.join(_HERE, "static"))
  app.config["RESULTS_KEY"] = results_key or secrets.token_urlsafe(12)
  app.config["MAX_CONTENT_LENGTH"] = 16 * 1024
  height, width = next(iter(sets.values())).images.shape[1:3]
  scale = images_lib.display_scale(height, width, display_size)

  @functools.lru_cache(maxsize=4096)
  def png(public_id: str) -> bytes:
    name, index = study.image(public_id)
    return images_lib.png_bytes(sets[name].images[index], scale)

  def json_body() -> dict:
    if not flask.request.is_json:
      raise RequestError(415, "send the request body as JSON (Content-Type: application/json)")
    body = flask.request.get_json(silent=True)
    if not isinstance(body, dict):
      raise RequestError(400, "the request body is not a JSON object")
    return body

  def session():
    return study.session(flask.request.headers.get(TOKEN_HEADER))

  @app.before_request
  def same_origin():
    origin = flask.request.headers.get("Origin")
    if flask.request.method == "POST" and origin and origin.rstrip("/") != flask.request.host_url.rstrip("/"):
      raise RequestError(403, f"cross-origin request from {origin} refused")

  @app.after_request
  def headers(response):
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
    if flask.request.path.startswith(("/api/", "/results")):
      response.headers["Cache-Control"] = "no-store"
    return response

  @app.errorhandler(RequestError)
  def request_error(e: RequestError):
    return _error(e.status, e.message)

  @app.errorhandler(exceptions.HTTPException)
  def http_error(e: exceptions.HTTPException):
    return _error(e.code or 500, e.description or e.name)

  @app.errorhandler(Exception)
  def internal_error(e: Exception):  # never a traceback in the page
    app.logger.exception("internal error")
    return _error(500, f"internal error ({type(e).__name__}); see the server's log")

  @app.get("/")
  def index():
    arms = study.arms()
    return flask.render_template("index.html", arms=arms, titles=report_lib.TITLES)

  @app.post("/api/start")
  def start():
    body = json_body()
    row = study.start(body.get("subject"), body.get("arm", "refined"))
    return flask.jsonify(token=row["token"], **study.state(row))

  @app.get("/api/state")
  def state():
    return flask.jsonify(study.state(session()))

  @app.post("/api/answer")
  def answer():
    current = session()
    body = json_body()
    return flask.jsonify(study.answer(current, body.get("trial_id"), body.get("answer"),
                                      body.get("time_ms")))

  @app.get("/image/<public_id>.png")
  def image(public_id: str):
    return flask.Response(png(public_id), mimetype="image/png",
                          headers={"Cache-Control": "private, max-age=3600"})

  def check_key():
    key = flask.request.args.get("key", "")
    if not hmac.compare_digest(key.encode(), app.config["RESULTS_KEY"].encode()):
      raise RequestError(403, "results need ?key=... (printed by the server when it starts)")

  @app.get("/results")
  def results():
    check_key()
    results = report_lib.arm_results(study)
    return flask.render_template("results.html", results=results, meta=study.meta(),
                                 cells=report_lib.summary_cells, header=report_lib.SUMMARY_HEADER,
                                 key=flask.request.args["key"])

  @app.get("/results.csv")
  def results_csv():
    check_key()
    return flask.Response(report_lib.csv_text(study), mimetype="text/csv",
                          headers={"Content-Disposition": "attachment; filename=turing_answers.csv"})

  return app


def _error(status: int, message: str):
  if flask.request.path.startswith("/api/"):
    response = flask.jsonify(error=message)
  else:
    response = flask.Response(message + "\n", mimetype="text/plain")
  response.status_code = status
  return response
