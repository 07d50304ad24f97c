"""One settings module: one parsing rule for every switch, profiles, presets, the README table."""
import re
from pathlib import Path

import pytest
import torch

from course_lib import bert, data, settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value,on", [("1", True), ("true", True), ("YES", True), (" on ", True),
                                      ("", False), ("0", False), ("False", False), ("no", False),
                                      ("off", False)])
def test_flag_has_one_rule(monkeypatch, value, on):
    monkeypatch.setenv("COURSE_OFFLINE", value)
    assert settings.flag("COURSE_OFFLINE") is on and settings.offline() is on


def test_flag_rejects_other_values_and_unknown_names(monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="COURSE_OFFLINE='maybe' is not a switch"):
        settings.offline()
    with pytest.raises(KeyError, match="COURSE_OFLINE"):
        settings.flag("COURSE_OFLINE")


def test_offline_true_keeps_the_bert_hub_offline_too(monkeypatch):
    """The bug this module fixes: COURSE_OFFLINE=true used to leave bert's hub download on."""
    monkeypatch.setenv("COURSE_OFFLINE", "true")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert settings.offline() and settings.hub_offline()
    with pytest.raises(FileNotFoundError, match="offline mode is on"):
        bert.locate_checkpoint("no-such-org/no-such-model-for-course-tests")


def test_hub_offline_alone_leaves_data_downloads_on(monkeypatch):
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert settings.hub_offline() and not settings.offline()


def test_data_paths_and_timeout(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_DATA_MIRROR", f"{tmp_path / 'a'}:{tmp_path / 'b'}: ")
    monkeypatch.setenv("COURSE_DATA_TIMEOUT", "2.5")
    assert settings.data_dir() == tmp_path
    assert settings.mirrors() == [tmp_path / "a", tmp_path / "b"]
    assert settings.download_timeout() == 2.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv("COURSE_DATA_TIMEOUT", bad)
        with pytest.raises(ValueError, match=f"COURSE_DATA_TIMEOUT='{bad}'"):
            settings.download_timeout()
    monkeypatch.delenv("COURSE_DATA_DIR")
    assert settings.data_dir() == Path.home() / ".cache" / "course_lib"


def test_data_module_reads_the_settings(monkeypatch, tmp_path):
    """data's error message follows settings.offline(), with the word 'true' as well as '1'."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("COURSE_DATA_MIRROR", raising=False)
    monkeypatch.setenv("COURSE_OFFLINE", "true")
    calls = []
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: calls.append(a))
    with pytest.raises(data.DataUnavailableError, match="unset COURSE_OFFLINE"):
        data.fetch("mnist")
    assert calls == []


def test_profile_and_pick(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    assert settings.get_profile() == "full" and settings.pick(1, 2) == 2
    monkeypatch.setenv("COURSE_PROFILE", "CI")
    assert settings.get_profile() == "ci" and settings.pick(1, 2) == 1
    assert settings.pick(1, 2, profile="full") == 2
    monkeypatch.delenv("COURSE_PROFILE")
    assert settings.get_profile() == ("full" if torch.cuda.is_available() else "ci")
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="COURSE_PROFILE='fast'"):
        settings.get_profile()
    with pytest.raises(ValueError, match="profile='big'"):
        settings.pick(1, 2, profile="big")


def test_presets_give_each_profile_its_side(monkeypatch):
    for chapter, table in settings.PRESETS.items():
        ci, full = settings.preset(chapter, "ci"), settings.preset(chapter, "full")
        assert set(ci) == set(full) == set(table)
        assert all((ci[k], full[k]) == table[k] for k in table)
    monkeypatch.setenv("COURSE_PROFILE", "ci")
    assert settings.preset("cnn") == settings.preset("cnn", "ci")
    with pytest.raises(ValueError, match="chapter='gan' has no preset"):
        settings.preset("gan")
    with pytest.raises(TypeError):
        settings.PRESETS["cnn"]["epochs"] = (1, 1)          # read-only: change it in the source


def test_no_module_reads_the_environment_itself():
    """Every COURSE_* setting is read in settings.py only (device, data, bert, benchmarks...)."""
    offenders = []
    for path in [*(ROOT / "src" / "course_lib").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        if path.name == "settings.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            names = r"(COURSE_\w+|HF_HUB_OFFLINE|BERT_CHECKPOINT)"
            if re.search(rf"environ\.get\(\s*['\"]{names}|environ\[['\"]{names}['\"]\](?!\s*=)", line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "read these through course_lib.settings:\n" + "\n".join(offenders)


def test_readme_settings_table_lists_every_variable():
    readme = (ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.M))
    assert rows == set(settings.VARIABLES), rows ^ set(settings.VARIABLES)
    assert all(f"``{name}``" in settings.__doc__ for name in settings.VARIABLES)


# --------------------------------------------------------------------------- presets: one source
CHAPTERS = {"cnn": ("01_cnn_mnist", "bench_cnn"), "autoencoder": ("02_autoencoders", "bench_autoencoder"),
            "contrastive": ("03_contrastive", "bench_contrastive"), "bert": ("05_bert", "bench_bert"),
            "finetune": ("07_finetuning", "bench_finetune")}


def test_every_preset_has_its_notebook_and_benchmark():
    assert set(CHAPTERS) == set(settings.PRESETS)


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_notebook_and_benchmark_run_the_preset(chapter):
    import ast
    import importlib
    import sys

    notebook, bench = CHAPTERS[chapter]
    sys.path.insert(0, str(ROOT))
    try:
        module = importlib.import_module(f"benchmarks.{bench}")
    finally:
        sys.path.remove(str(ROOT))
    full = settings.preset(chapter, "full")
    assert {k: module.FULL[k] for k in full} == full, "the benchmark's FULL must be the preset's full side"
    text = (ROOT / "notebooks" / f"{notebook}.py").read_text()
    assert f'P = preset("{chapter}")' in text
    assert set(re.findall(r'P\["(\w+)"\]', text)) == set(full), "the notebook reads every preset key"
    for key, (ci, fu) in settings.PRESETS[chapter].items():
        assert f"pick(ci={ci!r}, full={fu!r})" not in text, f"{key} written again by hand"
    doc = module.__doc__
    assert f'PRESETS["{chapter}"]' in doc
    for key, value in full.items():                 # a number in the docstring must be the preset's
        for m in re.finditer(rf"\b{key}=(\([\d, ]*\)|[-+]?\d[\d.e-]*)", doc):
            assert ast.literal_eval(m.group(1)) == value, f"{bench} docstring: {m.group(0)} != {value!r}"
