"""Tests for the course's own small pre-trained BERTs (``course_lib/checkpoints/``, made by
``scripts/pretrain_bert.py``): the loader checks their SHA-256, they load into
``course_lib.bert.BertModel`` and ``transformers.BertModel`` with the same outputs, a damaged copy
is refused with a message that names the fix, the package ships them, and the script is
deterministic."""
import fnmatch
import hashlib
import importlib.util
import json
import shutil
import tomllib
from pathlib import Path

import pytest
import torch

from course_lib import bert, data

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ["a gripping , funny and moving film .", "dull",
             "the plot is thin , but the actors are wonderful ."]


@pytest.mark.parametrize("name", sorted(bert.COURSE_CHECKPOINTS))
def test_course_checkpoint_is_verified_and_recorded(name):
    folder = bert.course_checkpoint(name)
    manifest = json.loads((folder / "manifest.json").read_text())
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert digest == bert.COURSE_CHECKPOINTS[name][1] == manifest["files"]["model.safetensors"]["sha256"]
    assert (folder / "model.safetensors").stat().st_size < 3_000_000       # "a few MB at most"
    assert manifest["name"] == name and manifest["steps"] > 0 and manifest["seconds"] > 0
    assert manifest["command"].startswith("python scripts/pretrain_bert.py")
    assert ("--nsp" in manifest["command"]) == (name == "mlm+nsp")


@pytest.mark.needs("transformers")
@pytest.mark.parametrize("name", sorted(bert.COURSE_CHECKPOINTS))
def test_course_checkpoint_loads_here_and_in_transformers_with_the_same_outputs(name):
    import transformers
    folder = bert.course_checkpoint(name)
    tok = bert.load_tokenizer(folder)
    x = bert.encode(tok, SENTENCES, max_length=32)                               # (3, 3, T)
    ours = bert.BertModel.from_pretrained(folder, add_pooling_layer=False)
    theirs = transformers.BertModel.from_pretrained(str(folder), add_pooling_layer=False,
                                                    dtype=torch.float32).eval()
    assert next(ours.parameters()).dtype == torch.float32
    with torch.no_grad():
        a = ours(x).last_hidden_state
        b = theirs(input_ids=x[:, 0], attention_mask=x[:, 1],
                   token_type_ids=x[:, 2]).last_hidden_state
    real = x[:, 1].bool()
    assert (a - b)[real].abs().max().item() <= 1e-5
    # the weights are the checkpoint's (not a fresh initialisation): same embedding matrix
    emb = bert.load_state(folder)["bert.embeddings.word_embeddings.weight"].float()
    assert torch.equal(ours.embeddings.word_embeddings.weight.detach(), emb)
    # the MLM head loads too, and the whole pre-training model where NSP was trained
    mlm = bert.BertForMaskedLM.from_pretrained(folder)
    assert mlm(x).shape[-1] == len(tok)
    if name == "mlm+nsp":
        assert bert.BertForPreTraining.from_pretrained(folder)(x).seq_relationship_logits.shape == (3, 2)


def test_corrupt_or_incomplete_copy_is_refused_with_the_fix(tmp_path, monkeypatch):
    folder = bert.course_checkpoint("mlm")
    digest = bert.COURSE_CHECKPOINTS["mlm"][1]
    copy = tmp_path / "mlm"
    shutil.copytree(folder, copy)
    assert bert.verify_checkpoint(copy, digest) == copy                        # intact: accepted
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-10] ^= 0xFF                                                       # one flipped byte
    (copy / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ValueError, match="model.safetensors is corrupt or changed"):
        bert.verify_checkpoint(copy, digest)
    # a manifest rewritten to match damaged weights does not fool the SHA-256 held in the code
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["model.safetensors"]["sha256"] = hashlib.sha256(bytes(weights)).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    bert.verify_checkpoint(copy)                                               # manifest alone: ok
    with pytest.raises(ValueError, match="corrupt"):
        bert.verify_checkpoint(copy, digest)
    (copy / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="vocab.txt is missing"):
        bert.verify_checkpoint(copy)
    # through course_checkpoint: the message names the checkpoint and how to get it back
    monkeypatch.setitem(bert.COURSE_CHECKPOINTS, "mlm", ("mlm", "0" * 64))
    with pytest.raises(ValueError, match=r"'mlm' failed its check.*Fix: reinstall.*"
                                         r"scripts/pretrain_bert\.py --out"):
        bert.course_checkpoint("mlm")
    monkeypatch.setitem(bert.COURSE_CHECKPOINTS, "mlm", ("no_such_folder", digest))
    with pytest.raises(FileNotFoundError, match="not installed.*Fix: reinstall"):
        bert.course_checkpoint("mlm")
    with pytest.raises(ValueError, match="the course's checkpoints are"):
        bert.course_checkpoint("bert-base")


def test_the_package_ships_every_checkpoint_file():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["course_lib"]
    package = ROOT / "src" / "course_lib"
    for name, (folder, _) in bert.COURSE_CHECKPOINTS.items():
        files = [p.relative_to(package).as_posix() for p in (package / "checkpoints" / folder).iterdir()]
        assert {"config.json", "model.safetensors", "vocab.txt", "manifest.json"} <= {
            Path(f).name for f in files}
        unshipped = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
        assert not unshipped, f"not in [tool.setuptools.package-data]: {unshipped}"


# ----------------------------------------------------------------------------- the script
def _script():
    spec = importlib.util.spec_from_file_location("pretrain_bert", ROOT / "scripts" / "pretrain_bert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = ["--steps", "3", "--batch", "8", "--vocab", "300", "--hidden", "32", "--layers", "1",
        "--heads", "2", "--max-len", "32", "--log-every", "1", "--quiet",
        "--no-sst2"]   # Wikipedia (inside gensim's wheel) only: no SST-2 download needed


@pytest.mark.slow
@pytest.mark.needs("transformers", "gensim")
def test_pretraining_script_is_deterministic(tmp_path):
    script = _script()
    torch_threads = torch.get_num_threads()
    try:
        digests = []
        for run, seed in [("a", "0"), ("b", "0"), ("c", "1")]:
            assert script.main(["--out", str(tmp_path / run), "--nsp", "--seed", seed, *TINY]) == 0
            digests.append({f: hashlib.sha256((tmp_path / run / f).read_bytes()).hexdigest()
                            for f in ("model.safetensors", "vocab.txt", "config.json")})
    finally:
        torch.set_num_threads(torch_threads)
    assert digests[0] == digests[1]                                            # same seed, same bytes
    assert digests[0]["model.safetensors"] != digests[2]["model.safetensors"]  # the seed matters
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["files"]["model.safetensors"]["sha256"] == digests[0]["model.safetensors"]
    assert manifest["steps"] == 3 and len(manifest["log"]) == 3 and manifest["objective"] == "L_MLM + L_NSP"
    assert bert.verify_checkpoint(tmp_path / "a", digests[0]["model.safetensors"])
    m = bert.BertForPreTraining.from_pretrained(tmp_path / "a")               # loads, NSP head included
    assert m.config.hidden_size == 32 and m.config.vocab_size == len(bert.load_tokenizer(tmp_path / "a"))


def test_script_splits_wikipedia_text_into_sentences_and_pads_batches():
    script = _script()
    text = "Anarchism is a philosophy of many kinds. It has many currents! Does it? Yes it does indeed."
    assert script.SENTENCE_END.split(text) == ["Anarchism is a philosophy of many kinds.",
                                               "It has many currents!", "Does it?",
                                               "Yes it does indeed."]
    a, b = torch.ones(2, 3, 5, dtype=torch.long), torch.ones(1, 3, 7, dtype=torch.long)
    x = script.pad_cat([a, b])
    assert x.shape == (3, 3, 7) and x[:2, :, 5:].abs().sum() == 0 and x[2].sum() == 21


def test_packed_rows_fill_full_rows_in_order_and_cut_the_last_sentence():
    script = _script()
    pieces = [[10, 11, 12], [20, 21], [30, 31, 32, 33, 34], [40]]
    rows, rest = script.packed_rows(pieces, [1, 0, 2, 3, 1], n_rows=2, max_len=8, cls_id=2, sep_id=3)
    assert rows.shape == (2, 3, 8)
    assert rows[0, 0].tolist() == [2, 20, 21, 3, 10, 11, 12, 3]              # two whole sentences
    assert rows[1, 0].tolist() == [2, 30, 31, 32, 33, 34, 3, 3]              # [40] cut to nothing
    assert rows[:, 1].eq(1).all() and rows[:, 2].eq(0).all()                 # no padding, segment A
    assert rest == [1]                                                       # the unused order
    with pytest.raises(ValueError, match="ran out of sentences"):
        script.packed_rows(pieces, [0], n_rows=1, max_len=8, cls_id=2, sep_id=3)


def test_script_refuses_nsp_without_pairs(capsys):
    with pytest.raises(SystemExit):
        _script().main(["--out", "unused", "--nsp", "--sst2-share", "1"])
    assert "--nsp needs Wikipedia pairs" in capsys.readouterr().err


@pytest.mark.needs("gensim")
def test_text8_documents_are_cut_into_word_spans(monkeypatch):
    """text8 itself is a download; its format (lower-case words, no punctuation, in chunks) is
    made here from the packaged Wikipedia extract, as text8 was made from Wikipedia."""
    import re
    from types import SimpleNamespace
    script = _script()
    words = re.sub(r"[^a-z]+", " ", " ".join(data.load_text_corpus("enwiki_sample").documents[:3])
                   .lower()).split()
    chunks = [" ".join(words[i:i + 1000]) for i in range(0, len(words), 1000)]
    asked = []
    monkeypatch.setattr(script.data, "load_text_corpus",
                        lambda name=None: asked.append(name) or SimpleNamespace(documents=chunks))
    docs = script.wiki_documents(corpus="text8")
    assert asked == ["text8"]
    n = script.TEXT8_SPAN
    assert all(len(s.split()) == n for d in docs for s in d)
    assert docs[0][:2] == [" ".join(words[:n]), " ".join(words[n:2 * n])]     # in order, no gap
    assert sum(len(d) for d in docs) == sum(len(c.split()) // n for c in chunks if len(c.split()) >= 2 * n)
