"""Readers for the standard metric-learning and few-shot benchmarks, from a local copy.

Each reader takes the folder the dataset was extracted to (``data.root``), checks that the
official files are there (a missing one stops with a line naming it and where the dataset is
published), and returns ``(train, held_out)`` with the protocol of the literature:

============  ==========================================================================
name          protocol
============  ==========================================================================
cub200        CUB-200-2011: classes 1–100 train, 101–200 held out, leave-one-out
              (Oh Song et al. 2016); ``images.txt``, ``image_class_labels.txt``,
              ``classes.txt``, ``images/``
cars196       Stanford Cars: classes 1–98 train, 99–196 held out, leave-one-out;
              the devkit's ``cars_annos.mat`` + ``car_ims/``
sop           Stanford Online Products: the official ``Ebay_train.txt`` / ``Ebay_test.txt``
              (11,318 / 11,316 products), leave-one-out
inshop        DeepFashion In-Shop: ``list_eval_partition.txt`` + ``img/``; train items;
              held-out ``query`` images searched in the ``gallery`` images
cifar10/100   torchvision's python-pickle batches; the official train / test sets
fewshot_csv   miniImageNet / tieredImageNet CSV layout (``images/`` + ``train.csv``,
              ``val.csv``, ``test.csv`` with ``filename,label``): base classes of
              ``train.csv`` train, novel classes of ``test.csv`` held out
omniglot      ``images_background/`` (30 alphabets) train, ``images_evaluation/``
              (20 alphabets) held out; a class is one ``alphabet/character`` folder
============  ==========================================================================

The class-disjoint splits (CUB, Cars) take the lower half of the class ids for training and the
upper half for evaluation, which is exactly 1–100 / 101–200 and 1–98 / 99–196 on the real
datasets. Class ids are shared between the two returned splits (one ``class_names`` tuple).
"""

from __future__ import annotations

import csv
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from supcon.data.sources import DataError, FileSplit, scan_image_folder

__all__ = ["BENCHMARKS", "ArraySplit", "Benchmark", "load_benchmark"]


@dataclass(frozen=True)
class ArraySplit:
    """Images held in memory as uint8 pixels (CIFAR), served as PIL images.

    Attributes:
        images: ``(N, H, W, C)`` uint8 tensor.
        labels: ``(N,)`` int64 class ids.
        class_names: Name of each class id.
        mode: PIL mode images are served in: ``"RGB"`` or ``"L"`` (grayscale).
    """

    images: torch.Tensor
    labels: np.ndarray
    class_names: tuple[str, ...]
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None
    mode: str = "RGB"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def labeled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def load(self, index: int) -> Image.Image:
        """Image ``index`` as a PIL image in :attr:`mode`."""
        image = Image.fromarray(self.images[index].numpy())
        return image if self.mode == "RGB" else image.convert(self.mode)


Splits = tuple[FileSplit | ArraySplit, FileSplit | ArraySplit]


@dataclass(frozen=True)
class Benchmark:
    """A benchmark reader and where its files come from."""

    read: Callable[[Path], Splits]
    files: str
    source: str


def _require(root: Path, names: list[str], dataset: str) -> None:
    """Raise a one-line :class:`DataError` naming the first of ``names`` missing under ``root``."""
    if not root.is_dir():
        bench = BENCHMARKS[dataset]
        raise DataError(
            f"data.root {str(root)!r} does not exist; data.dataset={dataset} expects {bench.files} "
            f"there (published at {bench.source})"
        )
    for name in names:
        if not (root / name).exists():
            bench = BENCHMARKS[dataset]
            raise DataError(
                f"{dataset}: {str(root / name)!r} is missing; data.root must hold {bench.files} "
                f"(published at {bench.source})"
            )


def _check_images(paths: list[str], dataset: str, listing: str) -> None:
    """Raise naming the first missing image of a file list (a partly extracted archive)."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DataError(
            f"{dataset}: {len(missing)} of {len(paths)} images listed in {listing} are missing, "
            f"the first is {missing[0]!r}; extract the whole archive "
            f"(published at {BENCHMARKS[dataset].source})"
        )


def _root(root: Path, inner: str) -> Path:
    """``root/inner`` when the archive's top folder was kept, else ``root``."""
    return root / inner if (root / inner).is_dir() else root


def _read_table(path: Path, columns: int, skip: int = 0) -> list[list[str]]:
    """Whitespace-separated rows of ``path`` (``skip`` header lines), each ``columns`` wide."""
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()[skip:]
    for number, line in enumerate(lines, start=skip + 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < columns:
            raise DataError(
                f"{str(path)!r} line {number}: expected {columns} fields, got {line!r}; "
                "the file is truncated or not the official one"
            )
        rows.append(parts[:columns])
    return rows


def _by_class_halves(
    paths: list[str], class_ids: np.ndarray, class_names: tuple[str, ...]
) -> Splits:
    """Lower half of the (1-based) class ids train, upper half held out."""
    cut = int(class_ids.max()) // 2
    labels = class_ids - 1
    every = FileSplit(tuple(paths), labels.astype(np.int64), class_names)
    return every.subset(np.flatnonzero(class_ids <= cut)), every.subset(
        np.flatnonzero(class_ids > cut)
    )


def read_cub200(root: Path) -> Splits:
    """CUB-200-2011: classes 1–100 train, 101–200 held out (leave-one-out)."""
    root = _root(root, "CUB_200_2011")
    _require(root, ["images.txt", "image_class_labels.txt", "classes.txt", "images"], "cub200")
    images = dict(_read_table(root / "images.txt", 2))
    labels = dict(_read_table(root / "image_class_labels.txt", 2))
    classes = {int(i): name for i, name in _read_table(root / "classes.txt", 2)}
    ids = sorted(images, key=int)
    unlabelled = [i for i in ids if i not in labels]
    if unlabelled:
        raise DataError(
            f"cub200: image {unlabelled[0]} of images.txt has no line in image_class_labels.txt; "
            "the two files are from different copies"
        )
    paths = [str(root / "images" / images[i]) for i in ids]
    _check_images(paths, "cub200", "images.txt")
    class_ids = np.array([int(labels[i]) for i in ids], dtype=np.int64)
    names = tuple(classes.get(k, str(k)) for k in range(1, int(class_ids.max()) + 1))
    return _by_class_halves(paths, class_ids, names)


def read_cars196(root: Path) -> Splits:
    """Stanford Cars (devkit ``cars_annos.mat``): classes 1–98 train, 99–196 held out."""
    from scipy.io import loadmat

    _require(root, ["cars_annos.mat", "car_ims"], "cars196")
    try:
        mat = loadmat(root / "cars_annos.mat", squeeze_me=True)
        annotations = np.atleast_1d(mat["annotations"])
        rel = [str(p) for p in annotations["relative_im_path"]]
        class_ids = np.asarray(annotations["class"], dtype=np.int64).reshape(-1)
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise DataError(
            f"cars196: cannot read annotations from {str(root / 'cars_annos.mat')!r} ({exc}); "
            "use the devkit's cars_annos.mat (fields relative_im_path, class)"
        ) from None
    raw_names = np.atleast_1d(mat.get("class_names", np.array([])))
    names = tuple(
        str(raw_names[k - 1]) if k <= len(raw_names) else str(k)
        for k in range(1, int(class_ids.max()) + 1)
    )
    paths = [str(root / p) for p in rel]
    _check_images(paths, "cars196", "cars_annos.mat")
    return _by_class_halves(paths, class_ids, names)


def _sop_file(root: Path, name: str) -> tuple[list[str], np.ndarray]:
    rows = _read_table(root / name, 4, skip=1)
    paths = [str(root / row[3]) for row in rows]
    _check_images(paths, "sop", name)
    return paths, np.array([int(row[1]) - 1 for row in rows], dtype=np.int64)


def read_sop(root: Path) -> Splits:
    """Stanford Online Products: the official ``Ebay_train.txt`` / ``Ebay_test.txt`` split."""
    root = _root(root, "Stanford_Online_Products")
    _require(root, ["Ebay_train.txt", "Ebay_test.txt"], "sop")
    train_paths, train_ids = _sop_file(root, "Ebay_train.txt")
    test_paths, test_ids = _sop_file(root, "Ebay_test.txt")
    count = int(max(train_ids.max(initial=-1), test_ids.max(initial=-1))) + 1
    names = tuple(str(k + 1) for k in range(count))
    return (
        FileSplit(tuple(train_paths), train_ids, names),
        FileSplit(tuple(test_paths), test_ids, names),
    )


def read_inshop(root: Path) -> Splits:
    """DeepFashion In-Shop: ``train`` images train; ``query`` images searched in ``gallery``."""
    _require(root, ["list_eval_partition.txt", "img"], "inshop")
    rows = _read_table(root / "list_eval_partition.txt", 3, skip=2)
    statuses = {row[2] for row in rows}
    unknown = sorted(statuses - {"train", "query", "gallery"})
    if unknown:
        raise DataError(
            f"inshop: list_eval_partition.txt has evaluation_status {unknown}; expected train, "
            "query, gallery (is this the In-Shop benchmark's file?)"
        )
    paths = [str(root / row[0]) for row in rows]
    _check_images(paths, "inshop", "list_eval_partition.txt")
    items = sorted({row[1] for row in rows})
    index = {item: k for k, item in enumerate(items)}
    labels = np.array([index[row[1]] for row in rows], dtype=np.int64)
    status = np.array([row[2] for row in rows])
    every = FileSplit(tuple(paths), labels, tuple(items))
    train = every.subset(np.flatnonzero(status == "train"))
    held = np.flatnonzero(status != "train")
    test = every.subset(held)
    is_query = status[held] == "query"
    test = FileSplit(test.paths, test.labels, test.class_names, is_query, ~is_query)
    return train, test


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(
            f"cannot read CIFAR batch {str(path)!r} ({exc}); re-extract the python version"
        ) from None


def _cifar_batches(paths: list[Path], label_key: str) -> tuple[torch.Tensor, np.ndarray]:
    data, labels = [], []
    for path in paths:
        batch = _unpickle(path)
        data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[label_key])
    pixels = np.concatenate(data).transpose(0, 2, 3, 1)
    return torch.from_numpy(np.ascontiguousarray(pixels)), np.asarray(labels, dtype=np.int64)


def _read_cifar(root: Path, dataset: str) -> Splits:
    if dataset == "cifar10":
        root = _root(root, "cifar-10-batches-py")
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_file, meta_file, label_key, names_key = (
            "test_batch",
            "batches.meta",
            "labels",
            ("label_names"),
        )
    else:
        root = _root(root, "cifar-100-python")
        train_files, test_file, meta_file = ["train"], "test", "meta"
        label_key, names_key = "fine_labels", "fine_label_names"
    _require(root, [*train_files, test_file, meta_file], dataset)
    names = tuple(str(n) for n in _unpickle(root / meta_file)[names_key])
    train_x, train_y = _cifar_batches([root / f for f in train_files], label_key)
    test_x, test_y = _cifar_batches([root / test_file], label_key)
    return ArraySplit(train_x, train_y, names), ArraySplit(test_x, test_y, names)


def read_cifar10(root: Path) -> Splits:
    """CIFAR-10, torchvision's ``cifar-10-batches-py`` pickles: 50,000 train, 10,000 test."""
    return _read_cifar(root, "cifar10")


def read_cifar100(root: Path) -> Splits:
    """CIFAR-100, torchvision's ``cifar-100-python`` pickles (fine labels): 50,000 / 10,000."""
    return _read_cifar(root, "cifar100")


def _fewshot_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"filename", "label"} <= set(reader.fieldnames or ()):
            raise DataError(
                f"fewshot_csv: {str(path)!r} has columns {reader.fieldnames}; expected a header "
                "filename,label"
            )
        return [(row["filename"].strip(), row["label"].strip()) for row in reader]


def read_fewshot_csv(root: Path) -> Splits:
    """miniImageNet / tieredImageNet CSVs: ``train.csv`` base classes, ``test.csv`` novel ones."""
    _require(root, ["images", "train.csv", "val.csv", "test.csv"], "fewshot_csv")
    train_rows = _fewshot_rows(root / "train.csv")
    test_rows = _fewshot_rows(root / "test.csv")
    shared = sorted({label for _, label in train_rows} & {label for _, label in test_rows})
    if shared:
        raise DataError(
            f"fewshot_csv: {len(shared)} classes (e.g. {shared[0]!r}) are in both train.csv and "
            "test.csv; the few-shot protocol needs disjoint base and novel classes"
        )
    names = tuple(dict.fromkeys([label for _, label in train_rows + test_rows]))
    index = {name: k for k, name in enumerate(names)}
    splits = []
    for rows, listing in ((train_rows, "train.csv"), (test_rows, "test.csv")):
        paths = [str(root / "images" / name) for name, _ in rows]
        _check_images(paths, "fewshot_csv", listing)
        labels = np.array([index[label] for _, label in rows], dtype=np.int64)
        splits.append(FileSplit(tuple(paths), labels, names))
    return splits[0], splits[1]


def _omniglot_set(folder: Path) -> FileSplit:
    """``folder/<alphabet>/<character>/*.png`` with one class per ``alphabet/character``."""
    paths: list[str] = []
    names: list[str] = []
    labels: list[np.ndarray] = []
    for alphabet in sorted(p for p in folder.iterdir() if p.is_dir()):
        characters = scan_image_folder(alphabet)
        offset = len(names)
        names.extend(f"{alphabet.name}/{c}" for c in characters.class_names)
        paths.extend(characters.paths)
        labels.append(characters.labels + offset)
    if not paths:
        raise DataError(
            f"omniglot: {str(folder)!r} has no alphabet/character/*.png images; extract "
            f"{folder.name}.zip there (published at {BENCHMARKS['omniglot'].source})"
        )
    return FileSplit(tuple(paths), np.concatenate(labels), tuple(names))


def read_omniglot(root: Path) -> Splits:
    """Omniglot: the 30 background alphabets train, the 20 evaluation alphabets held out."""
    root = _root(root, "omniglot-py")
    _require(root, ["images_background", "images_evaluation"], "omniglot")
    train = _omniglot_set(root / "images_background")
    test = _omniglot_set(root / "images_evaluation")
    offset = len(train.class_names)
    names = train.class_names + test.class_names
    return (
        FileSplit(train.paths, train.labels, names),
        FileSplit(test.paths, test.labels + offset, names),
    )


BENCHMARKS: dict[str, Benchmark] = {
    "cub200": Benchmark(
        read_cub200,
        "images.txt, image_class_labels.txt, classes.txt and images/ (CUB_200_2011.tgz)",
        "https://www.vision.caltech.edu/datasets/cub_200_2011/",
    ),
    "cars196": Benchmark(
        read_cars196,
        "cars_annos.mat and car_ims/ (car_ims.tgz + the devkit's cars_annos.mat)",
        "https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
    ),
    "sop": Benchmark(
        read_sop,
        "Ebay_train.txt, Ebay_test.txt and the <category>_final/ folders "
        "(Stanford_Online_Products.zip)",
        "https://cvgl.stanford.edu/projects/lifted_struct/",
    ),
    "inshop": Benchmark(
        read_inshop,
        "list_eval_partition.txt and img/ (DeepFashion In-shop Clothes Retrieval)",
        "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html",
    ),
    "cifar10": Benchmark(
        read_cifar10,
        "data_batch_1..5, test_batch and batches.meta (cifar-10-python.tar.gz, optionally "
        "inside cifar-10-batches-py/)",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": Benchmark(
        read_cifar100,
        "train, test and meta (cifar-100-python.tar.gz, optionally inside cifar-100-python/)",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "fewshot_csv": Benchmark(
        read_fewshot_csv,
        "images/ and train.csv, val.csv, test.csv with columns filename,label "
        "(the miniImageNet split of Ravi & Larochelle 2017)",
        "https://github.com/twitter-research/meta-learning-lstm (split CSVs)",
    ),
    "omniglot": Benchmark(
        read_omniglot,
        "images_background/ and images_evaluation/ (alphabet/character/*.png)",
        "https://github.com/brendenlake/omniglot",
    ),
}


def load_benchmark(dataset: str, root: str | Path | None) -> Splits:
    """Read benchmark ``dataset`` from ``root`` with its standard train / held-out protocol.

    Args:
        dataset: A key of :data:`BENCHMARKS`.
        root: The folder the dataset was extracted to.

    Returns:
        ``(train, held_out)`` splits sharing one class-id space.

    Raises:
        DataError: naming the first missing file, and where the dataset is published.
    """
    if dataset not in BENCHMARKS:
        raise DataError(f"unknown benchmark {dataset!r}; choose one of {', '.join(BENCHMARKS)}")
    bench = BENCHMARKS[dataset]
    if not root:
        raise DataError(
            f"data.dataset={dataset} needs data.root, the folder holding {bench.files} "
            f"(published at {bench.source})"
        )
    return bench.read(Path(root).expanduser().resolve())
