"""Results of a visual Turing test: per arm, accuracy with its tests, confusion, subjects.

``arm_results(study)`` is what the results page shows; ``write_report`` writes the
same as markdown plus one CSV row per answer.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics as pystats

from simgan_jax.turing import stats
from simgan_jax.turing import study as study_lib

# SIMGAN.md, "Visual Turing test".
PAPER = {
    "refined": {"summary": stats.summarize(517, 1000), "subjects": 10, "per_subject": "50 + 50",
                "confusion": {"real": {"real": 224, "refined": 276},
                              "refined": {"real": 207, "refined": 293}}},
    "synthetic": {"summary": stats.summarize(162, 200), "subjects": 10, "per_subject": "10 + 10",
                  "confusion": None},
}
TITLES = {"refined": "Real vs refined", "synthetic": "Real vs synthetic (control)"}
CSV_FIELDS = ("subject", "arm", "seed", "trial_id", "position", "image_id", "public_id", "image_set", "set_index",
              "truth", "answer", "correct", "time_ms", "answered_at")


@dataclasses.dataclass(frozen=True)
class ArmResult:
  arm: str
  title: str
  summary: stats.Summary
  confusion: dict[str, dict[str, int]]
  subjects: dict[str, stats.Summary]
  median_time_s: dict[str, float]
  sessions: list[dict]  # subject, answered, total
  paper: dict

  @property
  def finished(self) -> int:
    return sum(s["answered"] == s["total"] for s in self.sessions)


def arm_results(study: study_lib.Study) -> list[ArmResult]:
  """One result per arm the study runs, from the answers given so far."""
  answers = study.answers()
  sessions = study.sessions()
  results = []
  for arm in study.arms():
    rows = [a for a in answers if a["arm"] == arm]
    correct = sum(a["truth"] == a["answer"] for a in rows)
    times: dict[str, list[float]] = {}
    for a in rows:
      times.setdefault(a["subject"], []).append(a["time_ms"] / 1000)
    results.append(ArmResult(
        arm=arm, title=TITLES[arm], summary=stats.summarize(correct, len(rows)),
        confusion=stats.confusion([a["truth"] for a in rows], [a["answer"] for a in rows], arm),
        subjects=stats.per_subject((a["subject"], a["truth"] == a["answer"]) for a in rows),
        median_time_s={s: pystats.median(t) for s, t in times.items()},
        sessions=[s for s in sessions if s["arm"] == arm], paper=PAPER[arm]))
  return results


def _percent(x: float) -> str:
  return f"{100 * x:.1f}%"


def _p(p: float) -> str:
  return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def summary_cells(s: stats.Summary) -> list[str]:
  if not s.n:
    return ["0", "0", "-", "-", "-", "-"]
  return [str(s.n), str(s.correct), _percent(s.accuracy),
          f"{_percent(s.wilson_low)} - {_percent(s.wilson_high)}", _p(s.p_one_sided), _p(s.p_two_sided)]


SUMMARY_HEADER = ["answers", "correct", "accuracy", "Wilson 95%", "p one-sided", "p two-sided"]


def _table(header, rows) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def markdown(study: study_lib.Study, results: list[ArmResult] | None = None) -> str:
  results = arm_results(study) if results is None else results
  meta = study.meta()
  lines = [f"# Visual Turing test: {study.path}", "",
           "Sets: " + "; ".join(f"{name} = `{spec}` ({meta['set_sizes'][name]} images)"
                                for name, spec in meta["specs"].items())
           + f"; images {'x'.join(map(str, meta['image_shape']))} (H x W x C); study seed {meta['seed']}.",
           "",
           "Tests are exact binomial tests against chance (0.5): one-sided asks whether subjects "
           "tell the two kinds apart better than by guessing. Answers are counted as independent "
           "(as in the paper); see the per-subject table.", ""]
  for r in results:
    n_real, n_fake = meta["trials"][r.arm]
    lines += [f"## {r.title}", "",
              f"{len(r.sessions)} subject{'' if len(r.sessions) == 1 else 's'} ({r.finished} finished), "
              f"{n_real} real + {n_fake} {r.arm} "
              "trials each.", ""]
    lines += _table(["", *SUMMARY_HEADER], [["this study", *summary_cells(r.summary)],
                                            ["paper", *summary_cells(r.paper["summary"])]])
    lines += ["", "Confusion (rows: truth, columns: answer):", ""]
    rows = [[f"truth {t}", *(r.confusion[t][a] for a in ("real", r.arm))] for t in ("real", r.arm)]
    if r.paper["confusion"]:
      rows += [[f"paper: truth {t}", *(r.paper["confusion"][t][a] for a in ("real", r.arm))]
               for t in ("real", r.arm)]
    lines += _table(["", f"answered real", f"answered {r.arm}"], rows)
    lines += ["", "Per subject:", ""]
    lines += _table(["subject", *SUMMARY_HEADER, "median time (s)"],
                    [[s, *summary_cells(v), f"{r.median_time_s[s]:.2f}"] for s, v in r.subjects.items()])
    lines.append("")
  return "\n".join(lines)


def csv_cell(value):
  """``value`` safe for a spreadsheet: text that a spreadsheet would read as a formula
  (starting with = + - @, a tab or a carriage return) gets a leading apostrophe."""
  if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
    return "'" + value
  return value


def csv_text(study: study_lib.Study) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
  writer.writeheader()
  for a in study.answers():
    writer.writerow({k: csv_cell(v) for k, v in {**a, "correct": int(a["truth"] == a["answer"])}.items()})
  return out.getvalue()


def write_report(study: study_lib.Study, prefix: str) -> tuple[str, str]:
  """Writes ``PREFIX.md`` and ``PREFIX.csv``; returns their paths."""
  paths = (prefix + ".md", prefix + ".csv")
  with open(paths[0], "w") as f:
    f.write(markdown(study))
  with open(paths[1], "w", newline="") as f:
    f.write(csv_text(study))
  return paths
