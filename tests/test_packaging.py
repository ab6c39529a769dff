"""Packaging and the environment: licence and changelog, shell completion, CLIP weights with no network, head
file permissions."""

from __future__ import annotations

import re
import socket
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import gscodec
from gscodec_cli.main import cli, main

ROOT = Path(__file__).resolve().parent.parent
HUB_REPO = "timm/vit_base_patch32_clip_224.openai"  # open_clip's ViT-B-32 "openai" weights


def test_licence_and_changelog_match_the_project() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    assert project["authors"] and project["version"] == gscodec.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(gscodec.__version__)}\b", changelog, re.MULTILINE)


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F _gsi_completion gsi"),
                                           ("zsh", "compdef _gsi_completion gsi"),
                                           ("fish", "complete --no-files --command gsi")])
def test_shell_completion_script(shell: str, marker: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("_GSI_COMPLETE", f"{shell}_source")
    with pytest.raises(SystemExit) as done:
        main()  # the console script's entry point, as `_GSI_COMPLETE=bash_source gsi` runs it
    assert done.value.code == 0
    script = capsys.readouterr().out
    assert marker in script and f"_GSI_COMPLETE={shell}_complete" in script


def test_shell_completion_completes_commands_and_options(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for words, cword, expected in (("gsi en", "1", "plain,encode"), ("gsi encode --eff", "2", "plain,--effort")):
        monkeypatch.setenv("_GSI_COMPLETE", "bash_complete")
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", cword)
        with pytest.raises(SystemExit):
            main()
        assert capsys.readouterr().out.split() == [expected]


# --- CLIP weights without a network -------------------------------------------------------------------------


@pytest.fixture
def online_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub offline mode off, as on a machine whose network is simply down."""
    import huggingface_hub.constants as hc

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """open_clip's download functions fail the test if called."""
    import open_clip.pretrained as op

    def download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    for name in ("download_pretrained", "download_pretrained_from_hf", "hf_hub_download"):
        monkeypatch.setattr(op, name, download)


def test_offline_mode_fails_at_once_without_any_network_call(monkeypatch: pytest.MonkeyPatch, no_downloads: None,
                                                            tmp_path: Path) -> None:
    import huggingface_hub.constants as hc

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network call was attempted")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    path = tmp_path / "x.gsi"
    gscodec.write(gscodec.GaussianImage(8, 8, [[4.0, 4.0]], [[2.0, 0.0, 2.0]], [[0.5, 0.5, 0.5]]), path)
    result = CliRunner().invoke(cli, ["classify", str(path), "--rgb", "--model", "ViT-B-32", "--pretrained", "openai",
                                      "--labels", "cat,dog", "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "not in the local Hugging Face cache" in text and "HF_HUB_OFFLINE=1" in text and HUB_REPO in text


def test_no_network_fails_on_one_probe_without_backoff(monkeypatch: pytest.MonkeyPatch, online_mode: None,
                                                   no_downloads: None, tmp_path: Path) -> None:
    from gscodec.clip.teacher import WeightsUnavailableError, resolve_weights

    lookups: list[object] = []

    def unresolvable(host: object, *args: object, **kwargs: object) -> None:
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def no_backoff(seconds: float) -> None:
        raise AssertionError(f"a retry waited {seconds} s")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    monkeypatch.setattr(time, "sleep", no_backoff)
    with pytest.raises(WeightsUnavailableError, match="the Hub cannot be reached"):
        resolve_weights("ViT-B-32", "openai", cache_dir=str(tmp_path / "cache"))
    assert lookups and set(lookups) == {"huggingface.co"}  # the probe only: no download, no waits between retries


def test_a_cached_checkpoint_is_used_without_any_network_call(monkeypatch: pytest.MonkeyPatch, online_mode: None,
                                                              no_downloads: None, tmp_path: Path) -> None:
    from gscodec.clip.teacher import resolve_weights

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network call was attempted")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    repo = tmp_path / "cache" / f"models--{HUB_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    found = resolve_weights("ViT-B-32", "openai", cache_dir=str(tmp_path / "cache"))
    assert found == str(snapshot / "open_clip_pytorch_model.bin")
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")  # open_clip prefers the safetensors twin
    assert resolve_weights("ViT-B-32", "openai", cache_dir=str(tmp_path / "cache")) == str(
        snapshot / "open_clip_model.safetensors")


# --- head files ---------------------------------------------------------------------------------------------


def test_heads_are_written_with_the_usual_permissions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gscodec import atomic
    from gscodec.clip import create_head, save_head

    head, clip = create_head("gsi-tiny", pretrained="none")
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # what an ordinary open() makes under this process's umask
    save_head(head, tmp_path / "a.safetensors", clip)
    assert stat.S_IMODE((tmp_path / "a.safetensors").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    monkeypatch.setattr(atomic, "_umask", lambda: 0o027)
    save_head(head, tmp_path / "b.safetensors", clip)
    assert stat.S_IMODE((tmp_path / "b.safetensors").stat().st_mode) == 0o640
    (tmp_path / "b.safetensors").chmod(0o600)
    save_head(head, tmp_path / "b.safetensors", clip)  # a replaced file keeps its own permissions
    assert stat.S_IMODE((tmp_path / "b.safetensors").stat().st_mode) == 0o600


def test_umask_is_read_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    from gscodec import atomic

    from_proc = atomic._umask()

    def no_proc(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("/proc/self/status")

    monkeypatch.setattr(atomic, "open", no_proc, raising=False)
    assert atomic._umask() == from_proc & 0o666
