"""Publishing: signed at publish (the cache stays unsigned), a complete bundle at every moment, versions that
only go up, and no temporary folder left behind by a killed build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import pipeline.build.artifacts as artifacts
from pipeline.build.artifacts import StageResult, lock_work_folder, run_stage, unlock_work_folder
from pipeline.build.builder import build_scenario, publish_bundle
from pipeline.build.context import StageContext
from pipeline.build.publish import KEEP_VERSIONS, VERSIONS_FOLDER, publish, published_version
from pipeline.build.signing import PRIVATE_KEY_NAME, next_bundle_version
from pipeline.build.stages.bundle import BUNDLE_FOLDER
from pipeline.cli import main as edgemed
from pipeline.config import Profile
from pipeline.scenarios import get_scenario
from runtime.bundle import load_bundle
from runtime.contract import BundleManifest, parse_manifest
from runtime.trust import BundleFolder
from tests.runtime.conftest import session_signing_key, session_trust

MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return session_signing_key(tmp_path_factory)


@pytest.fixture(scope="module")
def trust(tmp_path_factory):
    return session_trust(tmp_path_factory)


@pytest.fixture
def source(breast_cancer_build) -> Path:
    """The bundle stage's cached (unsigned) folder."""
    return breast_cancer_build[1].artifacts["bundle"].path(BUNDLE_FOLDER)


def test_the_cached_bundle_stays_unsigned_and_the_published_one_is_stamped_and_signed(source, key, trust, tmp_path):
    assert not (source / SIGNATURE).exists()
    assert parse_manifest((source / MANIFEST).read_bytes()).release is None
    before = int(time.time())
    destination = publish(source, tmp_path / "bundles" / "breast-cancer", key)
    after = time.time()
    assert destination.is_symlink() and not Path(os.readlink(destination)).is_absolute()
    release = parse_manifest((destination / MANIFEST).read_bytes()).release
    assert release.key_id == key.key_id and release.key_purpose is key.purpose
    assert before <= release.bundle_version <= after  # UTC publish time in whole seconds
    bundle = load_bundle(destination, provider="cpu", threads=1, trust=trust)
    assert bundle.signed_by == key.key_id and bundle.release == release
    # Everything else is the stage's manifest, unchanged.
    cached, published = (BundleManifest.from_dict(json.loads((folder / MANIFEST).read_text())).to_dict()
                         for folder in (source, destination))
    assert {**published, "release": None} == cached


def test_publishing_without_a_key_stamps_a_version_but_no_signature(source, tmp_path):
    destination = publish(source, tmp_path / "b" / "breast-cancer")
    assert not (destination / SIGNATURE).exists()
    release = parse_manifest((destination / MANIFEST).read_bytes()).release
    assert release.key_id is None and release.key_purpose is None and release.bundle_version > 0


def test_versions_only_go_up_and_old_versions_are_pruned(source, key, tmp_path):
    destination = tmp_path / "bundles" / "breast-cancer"
    versions = []
    for _ in range(KEEP_VERSIONS + 2):  # several within one second: each still gets a higher version
        publish(source, destination, key)
        versions.append(parse_manifest((destination / MANIFEST).read_bytes()).release.bundle_version)
    assert versions == sorted(set(versions)) and published_version(destination) == versions[-1]
    kept = sorted(path.name for path in (destination.parent / VERSIONS_FOLDER / destination.name).iterdir())
    assert len(kept) == KEEP_VERSIONS and Path(os.readlink(destination)).name in kept
    assert next_bundle_version(None, now=1_000.7) == 1_000 and next_bundle_version(5_000, now=1_000) == 5_001


def test_publish_keeps_a_readable_bundle_at_every_moment(source, key, trust, tmp_path):
    """A reader loads the published bundle in a loop while it is published 20 times: no load ever fails."""
    destination = tmp_path / "bundles" / "breast-cancer"
    publish(source, destination, key)
    stop, failures, loads, reads, seen = threading.Event(), [], [0], [0], set()

    def load_in_a_loop() -> None:
        while not stop.is_set():
            try:
                bundle = load_bundle(destination, provider="cpu", threads=1, trust=trust)
                seen.add(bundle.release.bundle_version)
                loads[0] += 1
            except Exception as error:  # noqa: BLE001 - any failure at all is what this test looks for
                failures.append(repr(error))

    def read_in_a_loop() -> None:  # the cheaper check, many more times: every read is one complete bundle
        while not stop.is_set():
            try:
                with BundleFolder(destination) as folder:
                    manifest = parse_manifest(folder.read(MANIFEST))
                    folder.read_listed(manifest.files)
                reads[0] += 1
            except Exception as error:  # noqa: BLE001
                failures.append(repr(error))

    readers = [threading.Thread(target=load_in_a_loop), threading.Thread(target=read_in_a_loop)]
    for reader in readers:
        reader.start()
    try:
        for _ in range(20):
            publish(source, destination, key)
            time.sleep(0.01)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=60)
    assert failures == []
    assert loads[0] >= 5 and reads[0] >= 20 and len(seen) >= 2


def test_a_plain_bundle_folder_from_an_older_publish_becomes_a_link(source, key, trust, tmp_path):
    destination = tmp_path / "bundles" / "breast-cancer"
    destination.parent.mkdir()
    subprocess.run(["cp", "-r", str(source), str(destination)], check=True)  # how bundles used to be published
    assert destination.is_dir() and not destination.is_symlink()
    publish(source, destination, key)
    assert destination.is_symlink()
    assert load_bundle(destination, provider="cpu", threads=1, trust=trust).signed_by == key.key_id


def test_another_key_reuses_every_stage(breast_cancer_build, key, trust, tmp_path):
    root, first = breast_cancer_build
    scenario = get_scenario("breast-cancer")
    again = build_scenario(scenario, scenario.build_config(Profile.TINY, seed=0), StageContext(root / "artifacts"),
                           tmp_path / "bundles", signing_key=key)
    assert all(again.reused.values())
    assert load_bundle(again.bundle_directory, provider="cpu", threads=1, trust=trust).signed_by == key.key_id
    assert not (first.artifacts["bundle"].path(BUNDLE_FOLDER) / SIGNATURE).exists()
    assert publish_bundle(first.artifacts["bundle"], tmp_path / "plain" / "x").is_symlink()


# -- stale temporary folders ----------------------------------------------------------------------------------


def _age(path: Path, seconds: float = 3600) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_stale_stage_folders_of_a_killed_build_are_removed_on_the_next_run(tmp_path):
    """A build killed (SIGKILL) inside a stage leaves its ``.<id>.<random>`` folder; the next run removes it,
    but never the folder of a build that is still running (it holds a lock)."""
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from pipeline.build.artifacts import run_stage\n"
        "def produce(work):\n"
        "    (work / 'half.bin').write_bytes(b'x')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "run_stage('demo', {'n': 1}, None, Path(sys.argv[1]), produce)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert killed.returncode == -9
    stale = [path for path in (tmp_path / "demo").iterdir() if path.name.startswith(".")]
    assert len(stale) == 1 and artifacts.WORK_FOLDER.fullmatch(stale[0].name)
    _age(stale[0])
    live = tmp_path / "demo" / ".0123456789ab.abcdefgh"
    live.mkdir()
    _age(live)
    lock = lock_work_folder(live)
    fresh = tmp_path / "demo" / ".ba9876543210.zyxwvuts"  # just made by a build about to lock it
    fresh.mkdir()
    try:
        artifact, reused = run_stage("demo", {"n": 2}, None, tmp_path, lambda work: StageResult({}))
    finally:
        unlock_work_folder(lock)
    assert not reused and not stale[0].exists() and live.exists() and fresh.exists()
    assert artifact.directory.is_dir()


def test_a_killed_publish_leaves_a_staging_folder_that_the_next_publish_removes(source, key, tmp_path):
    destination = tmp_path / "bundles" / "breast-cancer"
    publish(source, destination, key)
    versions = destination.parent / VERSIONS_FOLDER / destination.name
    stale = versions / ".staging-abcd1234"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    _age(stale)
    publish(source, destination, key)
    assert not stale.exists()
    assert not [path for path in destination.parent.iterdir() if ".link-" in path.name]


# -- the command line -----------------------------------------------------------------------------------------


def test_build_signs_with_the_key_it_is_given_and_says_so(key, trust, tmp_path):
    arguments = ["build", "breast-cancer", "--profile", "tiny", "--artifacts", str(tmp_path / "a"), "--bundles",
                 str(tmp_path / "b")]
    signed = CliRunner().invoke(edgemed, [*arguments, "--sign-key", str(key.path)])
    assert signed.exit_code == 0, signed.output
    assert "DEVELOPMENT" in signed.output and key.key_id in signed.output
    assert load_bundle(tmp_path / "b" / "breast-cancer", provider="cpu", trust=trust).signed_by == key.key_id
    unsigned = CliRunner().invoke(edgemed, arguments)
    assert unsigned.exit_code == 0 and "UNSIGNED" in unsigned.output
    assert not (tmp_path / "b" / "breast-cancer" / SIGNATURE).exists()
    missing = CliRunner().invoke(edgemed, [*arguments, "--sign-key", str(tmp_path / PRIVATE_KEY_NAME)])
    assert missing.exit_code == 2 and "cannot be read" in missing.output


def test_a_second_build_of_a_scenario_is_published_beside_the_first_under_its_name(key, trust, tmp_path):
    """``--name`` publishes one scenario's bundle under another folder name (``make dashboard``'s rollout bundle, a
    build with another seed, sits beside the first in the one bundles folder the dashboard and collector read)."""
    arguments = ["build", "breast-cancer", "--profile", "tiny", "--artifacts", str(tmp_path / "a"), "--bundles",
                 str(tmp_path / "b"), "--sign-key", str(key.path)]
    assert CliRunner().invoke(edgemed, arguments).exit_code == 0
    second = CliRunner().invoke(edgemed, [*arguments, "--seed", "1", "--name", "breast-cancer-seed-1"])
    assert second.exit_code == 0, second.output
    first = load_bundle(tmp_path / "b" / "breast-cancer", provider="cpu", trust=trust)
    other = load_bundle(tmp_path / "b" / "breast-cancer-seed-1", provider="cpu", trust=trust)
    assert other.signed_by == key.key_id and other.manifest.lineage["bundle"] != first.manifest.lineage["bundle"]
    for wrong, says in ((["breast-cancer", "ecg-pvc", "--name", "x"], "name one scenario"),
                        (["breast-cancer", "--name", "../outside"], "not a folder name")):
        refused = CliRunner().invoke(edgemed, ["build", *wrong, "--artifacts", str(tmp_path / "a")])
        assert refused.exit_code == 2 and says in refused.output
