"""``python -m mutual_prompt.doctor [--root DATA] [DATASET ...]``: check a setup before hours of work.

The environment (Python, torch and its GPUs, the backend, clip, the CLIP weights in clip's cache, the
optional extras) is reported with the fix for what is missing, and does not change the exit status.
Each dataset is checked against ``dataset_catalog``: its folder, its split file (read with the
project's own reader), the class and image counts, the images the split lists but the disk lacks (a
partial extraction) and the images whose header does not open (all of them for a small dataset, a
random sample for a large one). The exit status is 0 exactly when every dataset checked is usable;
with no DATASET named, every dataset whose folder exists is checked and the others are listed as absent.
"""
import argparse
import importlib.metadata
import os
import platform
import random
import re
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate
from tqdm import tqdm

from mutual_prompt.data.image_check import why_unreadable
from mutual_prompt.data.listing import list_class_folders, list_images, read_text_lines
from mutual_prompt.data.split_files import SPLIT_PARTS, read_record_file, records_of
from mutual_prompt.names import unknown_name

from . import PACKAGE_CHECKOUT
from .dataset_catalog import ALIASES, CATALOG, RENDERED_DATASETS, DatasetEntry

PROG = "python -m mutual_prompt.doctor"
DESCRIPTION = """Check a setup before hours of work.

Reports the environment (Python, torch and its GPUs, the backend, clip, the CLIP weights in
clip's cache, the optional extras), then checks each dataset: its folder, its split file, the
class and image counts against CoOp's split, images the split lists but the disk lacks, and
images that do not open (all of them up to {all:,} images, else a random sample of {sample:,}).
Ends with a table: dataset | status | problem | fix.

Exit status: 0 when every dataset checked is usable, 1 when one is not, 2 for an unknown
dataset name. Environment findings (e.g. no CLIP weights) never change it."""
CHECK_ALL_UP_TO = 20_000  # a dataset with more images has a random sample of them checked
SAMPLE_SIZE = 2_000
SAMPLE_SEED = 0
SHOWN = 5  # paths listed per problem; the rest are counted
USABLE = ("ok", "warning", "renders itself")
CONFIG_BACKBONE = "ViT-B/16"  # the backbone of the vit_b16_* configs
LAYOUT_DOC = "docs/DATASETS.md"
PROBLEM_WIDTH, FIX_WIDTH = 48, 64  # the table's text columns wrap at these widths


@dataclass(frozen=True)
class Finding:
    problem: str  # short, for the table
    fix: str
    fatal: bool = True  # the dataset is not usable (a warning otherwise)
    detail: str = ""  # e.g. the paths concerned, for the report above the table


@dataclass
class DatasetReport:
    name: str  # the config name
    status: str = "ok"  # ok, warning, missing, broken, absent or renders itself
    lines: List[str] = field(default_factory=list)  # what was checked, for the readable report
    findings: List[Finding] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.status in USABLE

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)
        if finding.fatal:
            self.status = "broken"
        elif self.status == "ok":
            self.status = "warning"


def count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 'es' if what.endswith('s') else 's'}"


def shown(paths: Sequence[str]) -> str:
    """The first ``SHOWN`` of ``paths``, a line each, and how many more."""
    more = [f"and {len(paths) - SHOWN:,} more"] if len(paths) > SHOWN else []
    return "\n".join(list(paths[:SHOWN]) + more)


def layout_doc(entry: DatasetEntry) -> str:
    return f"{LAYOUT_DOC}#{entry.registry_name.lower()}"


def download_fix(entry: DatasetEntry) -> str:
    return f"get it from {' and '.join(entry.sources)}; layout: {layout_doc(entry)}"


# What a dataset's split lists: part -> [(absolute image path, class)]
Listing = Dict[str, List[Tuple[str, str]]]


def split_file_listing(entry: DatasetEntry, folder: str, report: DatasetReport) -> Optional[Listing]:
    path = os.path.join(folder, entry.split_file)
    get_it = f"download {entry.split_file} from {entry.split_source} into {folder}"
    if not os.path.isfile(path):
        absent = [name for name in entry.split_inputs if not os.path.exists(os.path.join(folder, name))]
        if absent:
            report.add(Finding(f"no split file {entry.split_file}, and a run cannot build one: "
                               f"{', '.join(absent)} missing", get_it))
        else:
            report.add(Finding(f"no split file {entry.split_file}: the first run builds one from the raw files, "
                               "which is not CoOp's split", f"{get_it} to compare with published numbers",
                               fatal=False))
        report.lines.append("counts and images not checked: they are read from the split file")
        return None
    try:
        data, _ = read_record_file(path, SPLIT_PARTS, "split file")
        records = {part: records_of(data, part, f"split file {path}") for part in SPLIT_PARTS}
    except ValueError as e:
        report.add(Finding(f"split file unreadable: {e}", get_it.replace("download", "download again", 1)))
        return None
    report.lines.append(f"split file {path}: read")
    prefix = os.path.join(folder, entry.image_folder)
    return {part: [(os.path.join(prefix, rel), str(label)) for rel, label, _ in items]
            for part, items in records.items()}


def list_file_listing(entry: DatasetEntry, folder: str, report: DatasetReport) -> Optional[Listing]:
    """FGVCAircraft: ``<image id> <variant>`` lines; the image is ``images/<image id>.jpg``."""
    listing: Listing = {}
    for part, name in entry.split_lists:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            report.add(Finding(f"no {name}", download_fix(entry)))
            return None
        listing[part] = []
        for line in read_text_lines(path, entry.registry_name):
            image_id, _, variant = line.partition(" ")
            listing[part].append((os.path.join(folder, entry.image_folder, image_id + ".jpg"), variant))
    return listing


def class_folder_listing(entry: DatasetEntry, folder: str, report: DatasetReport) -> Optional[Listing]:
    listing: Listing = {}
    for part, name in entry.class_folders:
        image_dir = os.path.join(folder, name)
        if not os.path.isdir(image_dir):
            report.add(Finding(f"no folder {name}/", download_fix(entry)))
            return None
        listing[part], empty = [], []
        classes = list_class_folders(image_dir)
        for class_name in tqdm(classes, desc=f"Listing {image_dir}", unit="class", leave=False, disable=None):
            class_dir = os.path.join(image_dir, class_name)
            try:
                listing[part] += [(os.path.join(class_dir, image), class_name) for image in list_images(class_dir)]
            except ValueError:
                empty.append(class_dir)
        if empty:
            report.add(Finding(f"{count(len(empty), 'class folder')} without images (a partial extraction?)",
                               f"extract the archive again; {download_fix(entry)}", detail=shown(empty)))
    return listing


def check_counts(entry: DatasetEntry, listing: Listing, report: DatasetReport) -> None:
    classes = len({label for items in listing.values() for _, label in items})
    found = [f"{count(classes, 'class')} (expected {entry.classes:,})"]
    differ = [] if classes == entry.classes else [f"{classes:,} classes"]
    for part in SPLIT_PARTS:
        expected = getattr(entry, part)
        if part not in listing or expected is None:
            continue
        n = len(listing[part])
        found.append(f"{part} {n:,} (expected {expected:,})")
        if n != expected:
            differ.append(f"{part} {n:,}")
    report.lines.append("; ".join(found))
    if differ:
        expected_sizes = ", ".join(f"{part} {getattr(entry, part):,}" for part in SPLIT_PARTS
                                   if part in listing and getattr(entry, part) is not None)
        report.add(Finding(f"{', '.join(differ)} where CoOp's split has {entry.classes:,} classes, {expected_sizes}",
                           "results are not comparable with published numbers; "
                           + (f"use CoOp's {entry.split_file} ({entry.split_source})" if entry.split_file
                              else f"check that the whole dataset was extracted ({' and '.join(entry.sources)})"),
                           fatal=False))


def images_to_check(paths: List[str]) -> List[str]:
    if len(paths) <= CHECK_ALL_UP_TO:
        return paths
    return sorted(random.Random(SAMPLE_SEED).sample(paths, SAMPLE_SIZE))


def check_images(entry: DatasetEntry, listing: Listing, report: DatasetReport, progress: bool) -> None:
    paths = list(dict.fromkeys(path for items in listing.values() for path, _ in items))
    listed_from_disk = bool(entry.class_folders)  # the listing found these files: none can be missing
    missing = [] if listed_from_disk else [path for path in paths if not os.path.isfile(path)]
    if missing:
        report.add(Finding(f"{count(len(missing), 'image')} of the {len(paths):,} listed "
                           f"{'is' if len(missing) == 1 else 'are'} not on disk "
                           "(a partial extraction?)", f"extract the archive again; {download_fix(entry)}",
                           detail=shown(missing)))
    absent = set(missing)
    present = [path for path in paths if path not in absent]
    checked = images_to_check(present)
    bad = []
    for path in tqdm(checked, desc=f"Opening {entry.config_name} images", unit="image", leave=False,
                     disable=None if progress else True):
        reason = why_unreadable(path)
        if reason:
            bad.append(f"{path} ({reason})")
    which = "all" if len(checked) == len(present) else f"a random sample of {len(present):,}"
    do_not_open = f"{'does' if len(bad) == 1 else 'do'} not open"
    report.lines.append(f"images: {len(present):,} of {len(paths):,} on disk; {len(checked):,} checked ({which}), "
                        f"{len(bad):,} {do_not_open}")
    if bad:
        report.add(Finding(f"{len(bad):,} of the {len(checked):,} images checked ({which}) {do_not_open}",
                           f"replace them with intact copies; {download_fix(entry)}", detail=shown(bad)))


def check_dataset(entry: DatasetEntry, root: str, named: bool = True, progress: bool = True) -> DatasetReport:
    """The report on ``entry`` under the data folder ``root``; an absent folder is ``missing`` if
    ``named``, else ``absent``."""
    report = DatasetReport(entry.config_name)
    folder = os.path.join(root, entry.folder)
    if not os.path.isdir(folder):
        report.status = "missing" if named else "absent"
        if named:
            report.findings.append(Finding(f"no folder {folder}", download_fix(entry)))
        report.lines.append(f"no folder {folder}")
        report.lines.append(f"expected: {entry.folder}/ with {entry.layout}")
        return report
    report.lines.append(f"folder {folder}; expected: {entry.layout}")
    for name in entry.required:
        if not os.path.exists(os.path.join(folder, name)):
            report.add(Finding(f"no {name}", download_fix(entry)))
    if entry.image_folder and not os.path.isdir(os.path.join(folder, entry.image_folder)):
        report.add(Finding(f"no folder {entry.image_folder}/ in {folder}", download_fix(entry)))
        return report
    if entry.split_file:
        listing = split_file_listing(entry, folder, report)
    elif entry.split_lists:
        listing = list_file_listing(entry, folder, report)
    else:
        listing = class_folder_listing(entry, folder, report)
    if listing is not None:
        check_counts(entry, listing, report)
        check_images(entry, listing, report, progress)
    return report


def rendered_report(name: str, root: str) -> DatasetReport:
    folder = os.path.join(root, name)
    where = f"rendered copy in {folder}" if os.path.isdir(folder) else f"rendered into {folder} on first use"
    return DatasetReport(name, "renders itself", [f"{RENDERED_DATASETS[name]} draws its own images: {where}"])


def resolve_names(names: Sequence[str]) -> List[str]:
    """Config names for ``names`` (config names or DATASET.NAMEs, any case); ValueError for an unknown one."""
    known = {**{n: n for n in list(CATALOG) + list(RENDERED_DATASETS)},
             **{e.registry_name: e.config_name for e in CATALOG.values()},
             **{registry: n for n, registry in RENDERED_DATASETS.items()}, **ALIASES}
    by_lower = {name.lower(): config for name, config in known.items()}
    resolved = []
    for name in names:
        if name.lower() not in by_lower:
            raise ValueError(unknown_name("dataset", name, list(CATALOG) + list(RENDERED_DATASETS)))
        resolved.append(by_lower[name.lower()])
    return list(dict.fromkeys(resolved))


def check_datasets(root: str, names: Sequence[str] = (), progress: bool = True) -> List[DatasetReport]:
    """Reports on the datasets ``names`` (config names), or on every dataset when none is named."""
    reports = []
    for name in names or list(CATALOG) + list(RENDERED_DATASETS):
        if name in RENDERED_DATASETS:
            reports.append(rendered_report(name, root))
        else:
            reports.append(check_dataset(CATALOG[name], root, named=bool(names), progress=progress))
    return reports


def usable(reports: Sequence[DatasetReport]) -> bool:
    return all(report.usable or report.status == "absent" for report in reports)


def wrap(text: str, width: int) -> str:
    """``text`` in lines of ``width``, addresses and paths never cut."""
    return textwrap.fill(text, width, break_long_words=False, break_on_hyphens=False)


def table(reports: Sequence[DatasetReport]) -> str:
    """``dataset | status | problem | fix``: a row per problem, one row for a dataset without any."""
    rows = []
    for report in reports:
        for finding in report.findings or [Finding("-", "-", fatal=False)]:
            rows.append([report.name, report.status, wrap(finding.problem, PROBLEM_WIDTH),
                         wrap(finding.fix, FIX_WIDTH)])
    return tabulate(rows, headers=["dataset", "status", "problem", "fix"], tablefmt="simple", disable_numparse=True)


def report_lines(reports: Sequence[DatasetReport]) -> List[str]:
    lines = []
    for report in reports:
        lines.append(f"{report.name}: {report.status}")
        lines += [f"  {line}" for line in report.lines]
        for finding in report.findings:
            lines.append(f"  {'problem' if finding.fatal else 'warning'}: {finding.problem}")
            lines += [f"    {line}" for line in finding.detail.splitlines()]
            lines.append(f"    fix: {finding.fix}")
    return lines


# Environment


def version_of(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def extras() -> Dict[str, List[str]]:
    """Extra name -> the distributions it adds, from the installed package's metadata (setup.py's extras)."""
    found: Dict[str, List[str]] = {}
    try:
        requirements = importlib.metadata.requires("mutual-prompt") or []
    except importlib.metadata.PackageNotFoundError:
        return found
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9_.\-]+)[^;]*;\s*extra\s*==\s*['\"]([^'\"]+)['\"]", requirement)
        if match and match.group(2) != "test":
            found.setdefault(match.group(2), []).append(match.group(1))
    return found


def torch_lines() -> List[str]:
    import torch

    lines = [f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        lines.append(f"CUDA {torch.version.cuda}: {count(len(names), 'device')}: {', '.join(names)}")
    else:
        lines.append("CUDA: not available (runs use the CPU: fine for the toy world, slow for real datasets)")
        lines.append(cpu_precision_line())
    return lines


def cpu_precision_line() -> str:
    """Which PREC suits this CPU: bf16 where it has bf16 instructions, fp32 where it has none."""
    from mutual_prompt.clip.precision import cpu_has_bf16_instructions

    has = cpu_has_bf16_instructions()
    if has is None:
        return "CPU bf16 instructions: cannot tell on this system (PREC fp32 is the safe choice on the CPU)"
    if has:
        return ("CPU bf16 instructions: yes (PREC bf16 is the fast CPU precision: about 3x fp32 at ViT-B/16 scale "
                "where measured; docs/PERFORMANCE.md#bf16-on-a-cpu)")
    return "CPU bf16 instructions: none (keep PREC fp32 on the CPU: bf16 would be emulated, slower than fp32)"


def backend_line() -> str:
    from mutual_prompt import backend

    if backend.BACKEND == "dassl":
        return f"backend: Dassl {getattr(sys.modules.get('dassl'), '__version__', 'unknown version')}"
    return "backend: the built-in runtime (Dassl does not import; set MUTUAL_PROMPT_BACKEND=dassl to require it)"


def weights_lines(cache_dir: str) -> Tuple[List[str], List[Finding]]:
    from mutual_prompt.clip import openai

    present = [name for name, url in openai.clip._MODELS.items()
               if os.path.isfile(os.path.join(cache_dir, os.path.basename(url)))]
    lines = [f"CLIP weights in {cache_dir}: {', '.join(present) if present else 'none'}"]
    findings = []
    if CONFIG_BACKBONE not in present:
        target = os.path.join(cache_dir, os.path.basename(openai.clip._MODELS[CONFIG_BACKBONE]))
        findings.append(Finding(f"no {CONFIG_BACKBONE} weights (the vit_b16_* configs' backbone) at {target}",
                                "a first run downloads them there; without internet, copy the file there or set "
                                "MODEL.BACKBONE.PATH", fatal=False))
    return lines, findings


def environment(cache_dir: str) -> Tuple[List[str], List[Finding]]:
    """Lines on the environment and its findings (which never make a dataset unusable)."""
    lines = [f"python {platform.python_version()} ({sys.executable})", *torch_lines(), backend_line()]
    clip_version = version_of("clip-anytorch")
    lines.append(f"clip: clip-anytorch {clip_version}" if clip_version else "clip: clip-anytorch not installed")
    findings = [] if clip_version else [Finding("clip-anytorch is not installed", "pip install clip-anytorch")]
    weights, weight_findings = weights_lines(cache_dir)
    lines += weights
    findings += weight_findings
    for extra, distributions in sorted(extras().items()):
        for distribution in distributions:
            version = version_of(distribution)
            lines.append(f"extra [{extra}]: {distribution} {version or 'not installed'}")
            if version is None:
                findings.append(Finding(f"{distribution} is not installed (extra [{extra}])",
                                        f"pip install 'mutual-prompt[{extra}]' if you need it", fatal=False))
    return lines, findings


def default_root() -> str:
    checkout = os.getcwd() if os.path.isfile("train.py") else PACKAGE_CHECKOUT
    return os.path.join(checkout, "data")


def data_root(given: Optional[str]) -> Tuple[str, str]:
    """The data folder and where it came from: --root, else $DATA, else the default ``<repo>/data``."""
    if given:
        return os.path.abspath(os.path.expanduser(given)), "--root"
    if os.environ.get("DATA", "").strip():
        return os.path.abspath(os.path.expanduser(os.environ["DATA"])), "$DATA"
    return default_root(), "neither --root nor DATA is set: using the default <repo>/data, as the sweep does"


def build_parser() -> argparse.ArgumentParser:
    choices = sorted(CATALOG) + sorted(RENDERED_DATASETS)
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION.format(all=CHECK_ALL_UP_TO, sample=SAMPLE_SIZE),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=textwrap.fill(f"datasets: {', '.join(choices)} (or their DATASET.NAME, "
                                                          "e.g. Caltech101)", width=88, subsequent_indent="  "))
    parser.add_argument("datasets", nargs="*", metavar="DATASET",
                        help="datasets to check (default: every dataset whose folder exists under the data folder)")
    parser.add_argument("--root", default=None,
                        help="the data folder (default: $DATA, else <repo>/data)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        names = resolve_names(args.datasets)
    except ValueError as e:
        parser.error(str(e))
    root, source = data_root(args.root)

    from mutual_prompt.clip.loader import CLIP_CACHE_DIR

    env_lines, env_findings = environment(CLIP_CACHE_DIR)
    print("Environment")
    print("\n".join(f"  {line}" for line in env_lines))
    for finding in env_findings:
        print(f"  note: {finding.problem}; fix: {finding.fix}")
    print(f"\nData folder: {root} ({source})")
    if not os.path.isdir(root):
        print(f"  {root} does not exist")
    print()
    reports = check_datasets(root, names)
    print("\n".join(report_lines([r for r in reports if r.status != "absent"])))  # absent: one line below
    print()
    print(table([r for r in reports if r.status != "absent"]))
    absent = [r.name for r in reports if r.status == "absent"]
    if absent:
        print(f"\nAbsent (no folder under {root}; not checked): {', '.join(absent)}")
    ok = usable(reports)
    named = "named" if names else "found"
    print(f"\n{'Every' if ok else 'Not every'} dataset {named} is usable.")
    return 0 if ok else 1
