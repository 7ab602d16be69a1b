"""Dataset refinement (simgan_jax.refining.refine, launch/refine.py): labels, resume, reading back."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from tests.conftest import REPO
from simgan_jax import checkpoints, models, parallel, preemption, training
from simgan_jax.configs import default, gaze as gaze_configs
from simgan_jax.data import sources
from simgan_jax.data.builders import image_folder
from simgan_jax.data.builders.prepare import prepare
from simgan_jax.errors import ConfigError
from simgan_jax.tasks import data
from simgan_jax.tasks import gaze as gaze_task
from simgan_jax.tasks import loop
from simgan_jax.refining import refine
from tests import fixtures_data

NUM, CHUNK = 40, 16


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A SimGAN workdir as train.py leaves it: config.json and a checkpoint (fresh params)."""
  root = tmp_path_factory.mktemp("simgan")
  config = default.get_config("smoke")
  mesh = parallel.make_mesh()
  state = training.create_state(training.make_setup(config, None, None, mesh.devices.size), mesh)
  mngr = checkpoints.manager(str(root), 3)
  checkpoints.save(mngr, 0, state)
  mngr.close()
  (root / "config.json").write_text(config.to_json_best_effort(indent=2))
  return str(root)


@pytest.fixture(scope="module")
def config(workdir):
  return refine.load_config(workdir)


@pytest.fixture(scope="module")
def simulated(workdir, config, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("refined") / "eyesim")
  refine.refine_dataset(config, workdir, "eyesim", out, num_examples=NUM, chunk_size=CHUNK, progress=False)
  return out


def read_all(out):
  source = tfds.builder_from_directory(out).as_data_source("train")
  examples = [source[i] for i in range(len(source))]
  return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}


def params_of(config, workdir):
  return refine.restore_refiner(config, workdir)[0]


def test_simulator_labels_bitwise_and_images_are_the_refiners(simulated, workdir, config):
  out = read_all(simulated)
  assert sorted(os.listdir(simulated)) == sorted(
      ["dataset_info.json", "features.json", "metadata.json", refine.MANIFEST,
       "simgan_refined-train.array_record-00000-of-00001"])
  np.testing.assert_array_equal(out["index"], np.arange(NUM))
  source = sources.make_source(config.synthetic_data, (35, 55, 1))
  key = jax.random.PRNGKey(0)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(np.arange(NUM))
  batch = jax.device_get(jax.jit(source.sample)({}, keys))
  # The stored labels are the render's own (bit-for-bit: see the npz test); rendered again
  # by another compiled program, the last float bit may differ.
  for name in ("gaze", "pitchyaw", "pupil_center", "head_pose", "eyelid_landmarks", "iris_landmarks"):
    assert out[name].dtype == batch[name].dtype == np.float32
    np.testing.assert_allclose(out[name], batch[name], rtol=1e-6, atol=1e-6, err_msg=name)
  refined = models.make_refiner(config).apply({"params": params_of(config, workdir)}, batch["image"])
  expected = sources.from_unit_range(refined)
  assert out["image"].dtype == np.uint8 and out["image"].shape == (NUM, 35, 55, 1)
  assert np.abs(out["image"].astype(int) - expected).max() <= 1
  assert not np.array_equal(out["image"], sources.from_unit_range(batch["image"]))  # it did refine


def test_finite_set_keeps_labels_bit_for_bit_with_their_dtypes(tmp_path, workdir, config):
  rng = np.random.default_rng(0)
  labels = {"gaze": rng.normal(size=(21, 3)).astype(np.float32), "weight": rng.normal(size=21),
            "person": rng.integers(0, 9, 21, dtype=np.int32), "flag": rng.integers(0, 2, 21).astype(bool),
            "scalar32": rng.normal(size=21).astype(np.float32)}
  images = rng.integers(0, 256, (21, 35, 55, 1), dtype=np.uint8)
  np.savez(tmp_path / "in.npz", images=images, **labels)
  out = refine.refine_dataset(config, workdir, f"npz:{tmp_path}/in.npz", str(tmp_path / "out"),
                              num_examples=19, chunk_size=8, keep_synthetic=True, progress=False)
  read = read_all(out)
  np.testing.assert_array_equal(read["index"], np.arange(19))
  np.testing.assert_array_equal(read["synthetic"], images[:19])
  # Read back through the training source: every label, its dtype and its bits.
  source = sources.make_source(data.data_config(f"tfds:{out}", gaze_configs.get_config("smoke"), True),
                               (35, 55, 1))
  for name, value in labels.items():
    assert source.labels[name].dtype == value.dtype, name
    np.testing.assert_array_equal(source.labels[name].view(np.uint8), value[:19].view(np.uint8))
  mesh = parallel.local_mesh()
  np.testing.assert_array_equal(source.images, refine.refine_arrays(config, params_of(config, workdir),
                                                                    images[:19], mesh, 8))


class Interrupt(Exception):
  pass


def test_interrupted_run_resumes_bitwise_equal_and_finished_run_does_nothing(tmp_path, simulated,
                                                                             workdir, config):
  out, seen = str(tmp_path / "out"), []

  def stop_after_two(chunk):
    seen.append(chunk)
    if len(seen) == 2:
      raise Interrupt

  run = lambda hook: refine.refine_dataset(config, workdir, "eyesim", out, num_examples=NUM,  # noqa: E731
                                           chunk_size=CHUNK, progress=False, on_chunk=hook)
  with pytest.raises(Interrupt):
    run(stop_after_two)
  assert sorted(os.listdir(os.path.join(out, refine.CHUNKS))) == ["chunk_0000000.npz", "chunk_0000001.npz"]
  assert not refine.is_done(out)
  seen.clear()
  run(seen.append)
  assert seen == [2]  # only the missing chunk
  assert not os.path.exists(os.path.join(out, refine.CHUNKS))
  resumed, straight = read_all(out), read_all(simulated)
  assert resumed.keys() == straight.keys()
  for name in straight:
    np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)
  seen.clear()
  assert run(seen.append) == out and seen == []


@pytest.mark.parametrize("change, field", [({"chunk_size": 8}, "chunk_size"),
                                           ({"num_examples": 41}, "num_examples"),
                                           ({"seed": 1}, "seed")])
def test_resume_with_other_settings_is_refused(simulated, workdir, config, change, field):
  settings = {"num_examples": NUM, "chunk_size": CHUNK, "progress": False, **change}
  with pytest.raises(ConfigError) as e:
    refine.refine_dataset(config, workdir, "eyesim", simulated, **settings)
  message = str(e.value)
  assert "\n" not in message and message.startswith(f"--out {simulated}: made with other settings ({field}:")


def test_missing_checkpoint_and_simulator_without_count(tmp_path, workdir, config):
  missing = str(tmp_path / "nope")
  with pytest.raises(ConfigError, match=f"^--checkpoint {missing}: no such directory$"):
    refine.load_config(missing)
  with pytest.raises(ConfigError, match=f"^--checkpoint {missing}: no such directory$"):
    refine.refine_dataset(config, missing, "eyesim", str(tmp_path / "out"), num_examples=4)
  with pytest.raises(ConfigError, match="^--num_examples: the simulator"):
    refine.refine_dataset(config, workdir, "eyesim", str(tmp_path / "out"))


def test_workdir_without_checkpoint_says_when_the_first_comes(tmp_path, workdir, config):
  empty = tmp_path / "run"
  empty.mkdir()
  (empty / "config.json").write_text(open(os.path.join(workdir, "config.json")).read())
  # Was: "...checkpoints: no checkpoints (is --workdir/--checkpoint a training workdir?)".
  with pytest.raises(ConfigError, match=f"^--checkpoint {empty}: no checkpoint in {empty} yet; the first "
                     "is written at step 5$"):
    refine.restore_refiner(config, str(empty))
  with pytest.raises(ConfigError, match=r"^--step 7: no checkpoint for that step in .* \(saved steps: 0\)$"):
    refine.restore_refiner(config, workdir, 7)


def test_output_trains_the_gaze_estimator(simulated, tmp_path):
  config = gaze_configs.get_config("smoke")
  config.num_steps = 2
  source = data.train_source(f"tfds:{simulated}", config)
  read = read_all(simulated)
  np.testing.assert_array_equal(source.labels["gaze"], read["gaze"])
  results = loop.train_estimator(gaze_task.TASK, config, source, {"refined": (read["image"], read["gaze"])},
                                               str(tmp_path / "gaze"))
  assert results["steps"] == 2 and results["eval"]["refined"]["num_images"] == NUM


def test_launcher_end_to_end_and_one_line_errors(tmp_path, workdir, simulated):
  def launch(*flags):
    cmd = [sys.executable, os.path.join(REPO, "launch/refine.py"), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr

  out = tmp_path / "out"
  code, stdout, err = launch(f"--checkpoint={workdir}", f"--out={out}", "--num_examples=24", "--chunk_size=16")
  assert code == 0, err
  assert f"\nrefined dataset: {out} (24 images, " in stdout
  # The closing block: what was refined with which step, where, what next; the same as JSON.
  block = stdout[stdout.index("\ndone: ") + 1:].splitlines()
  assert block[0].startswith(f"done: refined 24 images (tfds) in ") and block[0].endswith(f"{workdir} step 0")
  assert f"  folder: {out}" in block and f"  summary: {out}/summary.jsonl" in block
  assert f"  python launch/train_gaze.py --train_data=tfds:{out} --workdir={out}_gaze" in block
  facts = json.loads((out / "summary.jsonl").read_text())
  assert facts["step"] == 0 and facts["images"] == 24 and os.path.isdir(facts["outputs"]["folder"])
  assert facts["domain"] == {"source": "eyesim", "target": "eyesim_target", "image_shape": [35, 55, 1],
                             "subject": "eyes"}
  # Not a terminal: plain progress lines, no carriage return; the last one is the total.
  assert "\r" not in err and "refine: 24 images in " in err
  # Only our lines: no orbax read_only warnings on the restore, no TFDS or jax lines.
  assert all(line.startswith("refine: ") for line in err.splitlines()), err
  read, straight = read_all(str(out)), read_all(simulated)
  for name in straight:  # the same images 0..23 as the library run with the same chunk size
    np.testing.assert_array_equal(read[name], straight[name][:24], err_msg=name)
  code, _, err = launch(f"--checkpoint={tmp_path}/missing", f"--out={out}")
  assert code == 1 and "Traceback" not in err
  assert err.strip().splitlines()[-1] == f"error: --checkpoint {tmp_path}/missing: no such directory"
  # The eye refiner on hand renders: one line naming the mismatch and the flag, nothing written.
  code, _, err = launch(f"--checkpoint={workdir}", "--data=handsim", "--num_examples=4", "--format=png",
                        f"--out={tmp_path}/hands")
  assert code == 1 and err.strip().splitlines() == [
      "error: --data=handsim: handsim images show hands, the refiner was trained on eyesim (eyes); "
      "pass --allow_domain_mismatch to refine them anyway"]
  assert not os.path.exists(tmp_path / "hands")


def test_png_output_has_the_users_file_names_and_labels(tmp_path, workdir, config):
  # The user's folder: nested names, a JPEG among PNGs, labels.csv rows in their own order.
  rng = np.random.default_rng(3)
  names = ["b.png", "a/z.png", "a/b/c.png", "a-b.png", "photo.jpg"]
  fixtures_data.write_image_folder(tmp_path / "mine", {
      n: rng.integers(0, 256, (35, 55), dtype=np.uint8) for n in names if n.endswith(".png")})
  Image.fromarray(rng.integers(0, 256, (35, 55), dtype=np.uint8)).save(tmp_path / "mine" / "photo.jpg")
  rows = {n: (round(float(rng.normal()), 7), float(i) + 0.1) for i, n in enumerate(names)}
  (tmp_path / "mine" / "labels.csv").write_text(
      "filename,pitch,yaw\n" + "".join(f"{n},{p},{y}\n" for n, (p, y) in rows.items()))
  data_dir = str(tmp_path / "data")
  prepare("image_folder", str(tmp_path / "mine"), data_dir)
  spec = "image_folder/35x55x1"
  out = refine.refine_dataset(config, workdir, spec, str(tmp_path / "png"), chunk_size=2, progress=False,
                              data_dir=data_dir, format="png")

  # Today's bug this catches: names dropped, order shuffled by the builder, labels lost.
  expected_names = sorted(n.replace(".jpg", ".png") for n in names)
  written = sorted(os.path.relpath(os.path.join(d, f), out).replace(os.sep, "/")
                   for d, _, files in os.walk(out) for f in files if f.endswith(".png"))
  assert written == expected_names
  labels, label_names = image_folder.read_labels(pathlib.Path(out))
  assert label_names == ["pitch", "yaw"]
  users, _ = image_folder.read_labels(tmp_path / "mine")
  assert sorted(labels) == expected_names
  for name in names:
    np.testing.assert_array_equal(labels[name.replace(".jpg", ".png")], users[name], err_msg=name)
  # Rows in the user's order (the builder's sorted relative paths), one per image.
  csv_names = [line.split(",")[0] for line in (pathlib.Path(out) / "labels.csv").read_text().splitlines()[1:]]
  user_order = sorted(names, key=lambda n: pathlib.PurePosixPath(n).parts)
  assert csv_names == [n.replace(".jpg", ".png") for n in user_order]
  # Each PNG is the refined image of that very file.
  mine = {n: np.asarray(Image.open(tmp_path / "mine" / n).convert("L"))[..., None] for n in names}
  refined = refine.refine_arrays(config, params_of(config, workdir), np.stack([mine[n] for n in user_order]))
  for name, image in zip(user_order, refined):
    np.testing.assert_array_equal(np.asarray(Image.open(os.path.join(out, name.replace(".jpg", ".png")))),
                                  image[..., 0], err_msg=name)
  assert refine.is_done(out) and refine.num_examples(out) == len(names)

  # TFDS output keeps file_name, in the same (user's) order, with index = position there.
  tfds_out = refine.refine_dataset(config, workdir, spec, str(tmp_path / "tfds"), chunk_size=2,
                                   progress=False, data_dir=data_dir)
  read = read_all(tfds_out)
  assert [n.decode() for n in read["file_name"]] == user_order
  np.testing.assert_array_equal(read["index"], np.arange(len(names)))
  np.testing.assert_array_equal(read["label"], np.stack([users[n] for n in user_order]))


def test_png_output_of_simulator_has_index_names_and_every_label(tmp_path, workdir, config):
  out = refine.refine_dataset(config, workdir, "eyesim", str(tmp_path / "png"), num_examples=5,
                              chunk_size=4, progress=False, format="png")
  assert sorted(f for f in os.listdir(out) if f.endswith(".png")) == [f"{i:06d}.png" for i in range(5)]
  lines = (pathlib.Path(out) / "labels.csv").read_text().splitlines()
  header = lines[0].split(",")
  assert header[:4] == ["filename", "eyelid_landmarks_0", "eyelid_landmarks_1", "eyelid_landmarks_2"]
  assert "gaze_2" in header and "pitchyaw_1" in header and len(lines) == 6
  tfds_out = read_all(refine.refine_dataset(config, workdir, "eyesim", str(tmp_path / "tfds"), num_examples=5,
                                            chunk_size=4, progress=False))
  gaze = np.array([[np.float32(v) for v in line.split(",")[header.index("gaze_0"):header.index("gaze_2") + 1]]
                   for line in lines[1:]])
  np.testing.assert_array_equal(gaze, tfds_out["gaze"])  # exact float32 round trip through the CSV
  for i in range(5):
    np.testing.assert_array_equal(np.asarray(Image.open(os.path.join(out, f"{i:06d}.png"))),
                                  tfds_out["image"][i, ..., 0])


def test_png_labels_csv_keeps_the_inputs_header_and_integer_labels(tmp_path, workdir, config):
  rng = np.random.default_rng(5)
  fixtures_data.write_image_folder(tmp_path / "mine", {
      f"im{i}.png": rng.integers(0, 256, (35, 55), dtype=np.uint8) for i in range(3)})
  csv_text = "file,cls,angle\nim0.png,8,0.5\nim1.png,-3,1.25\nim2.png,0,-2\n"
  (tmp_path / "mine" / "labels.csv").write_text(csv_text)
  data_dir = str(tmp_path / "data")
  prepare("image_folder", str(tmp_path / "mine"), data_dir)
  out = refine.refine_dataset(config, workdir, "image_folder/35x55x1", str(tmp_path / "png"), progress=False,
                              data_dir=data_dir, format="png")
  # Today's bug: "filename" for "file" and 8.0 for 8; a column with a fraction stays as written.
  assert (pathlib.Path(out) / "labels.csv").read_text() == csv_text.replace("-2\n", "-2.0\n")


def test_step_best_reads_the_selection_score(tmp_path, workdir, config):
  import shutil  # pylint: disable=g-import-not-at-top

  run = tmp_path / "run"
  shutil.copytree(workdir, run)
  with open(run / "metrics.jsonl", "w") as f:
    f.write(json.dumps({"step": 0, "realism_kid": 0.5, "selection_score": float("inf"), "collapsed": 1.0}) + "\n")
  # The only checkpoint collapsed: --step=best refuses it in one line instead of refining with it.
  with pytest.raises(ConfigError, match="no checkpoint qualifies for selection"):
    refine.refine_dataset(config, str(run), "eyesim", str(tmp_path / "a"), num_examples=8, step="best",
                          progress=False)
  with open(run / "metrics.jsonl", "a") as f:
    f.write(json.dumps({"step": 0, "realism_kid": 0.5, "selection_score": 0.5}) + "\n")
  out = refine.refine_dataset(config, str(run), "eyesim", str(tmp_path / "b"), num_examples=8, step="best",
                              progress=False)
  assert json.load(open(os.path.join(out, refine.MANIFEST)))["step"] == 0


def test_drill_bad_inputs_are_one_line_and_sigterm_keeps_every_saved_chunk(tmp_path, simulated, workdir,
                                                                        config):
  """The refine path's bad inputs: one line naming the flag or file; nothing saved is lost."""
  out = tmp_path / "out"

  def one_line(error, start):
    message = str(error.value)
    assert "\n" not in message and message.startswith(start), message

  with pytest.raises((ConfigError, ValueError)) as e:  # unknown data
    refine.refine_dataset(config, workdir, "no_such_data", str(out), num_examples=4, progress=False)
  one_line(e, "--data=no_such_data: unknown data source 'no_such_data'; known: eyesim, ")
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  with pytest.raises(ConfigError) as e:  # an --out that cannot be made
    refine.refine_dataset(config, workdir, "eyesim", str(blocker / "out"), num_examples=4, progress=False)
  one_line(e, f"--out {blocker / 'out'}: not writable (")
  with pytest.raises(ConfigError) as e:  # a chunk size that is not one
    refine.refine_dataset(config, workdir, "eyesim", str(out), num_examples=4, chunk_size=0, progress=False)
  one_line(e, "--chunk_size: must be an integer > 0")

  # SIGTERM while the second chunk is in flight: the real signal through the real handler.
  def sigterm_after_the_first(chunk):
    if chunk == 0:
      os.kill(os.getpid(), signal.SIGTERM)

  run = lambda hook: refine.refine_dataset(config, workdir, "eyesim", str(out), num_examples=NUM,  # noqa: E731
                                           chunk_size=CHUNK, progress=False, on_chunk=hook)
  handler = signal.getsignal(signal.SIGTERM)
  with pytest.raises(preemption.Stopped) as e:
    run(sigterm_after_the_first)
  assert e.value.signum == signal.SIGTERM
  chunks = os.path.join(out, refine.CHUNKS)
  assert str(e.value) == (f"stopped by SIGTERM after chunk 0; 1 of 3 chunks saved in {chunks}; "
                          "run the same command to resume")
  assert os.listdir(chunks) == ["chunk_0000000.npz"]  # no half-written file
  assert signal.getsignal(signal.SIGTERM) is handler and not refine.is_done(str(out))  # restored
  seen = []
  run(seen.append)
  assert seen == [1, 2]  # the saved chunk is kept, the rest refined
  resumed, straight = read_all(str(out)), read_all(simulated)
  for name in straight:
    np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)


def test_launchers_turn_a_saved_stop_into_one_line_and_128_plus_the_signal(tmp_path):
  script = tmp_path / "stops.py"
  script.write_text(
      "import signal, sys\n"
      f"sys.path.insert(0, {REPO!r})\n"
      "from launch import common\n"
      "from simgan_jax import preemption\n"
      "def main(argv):\n"
      "  raise preemption.Stopped(signal.SIGTERM, 7, '/w/checkpoints/7')\n"
      "common.run(main)\n")
  proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM
  assert proc.stderr.strip().splitlines() == [
      "stopped by SIGTERM at step 7; checkpoint saved in /w/checkpoints/7; run the same command to resume"]
