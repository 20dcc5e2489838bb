"""Error-adjusted area and accuracy from a stratified random sample (Olofsson et al. 2013, 2014).

The estimator works on strata, each lying wholly inside one map class (Stehman 2014); when every
map class is its own stratum it reduces exactly to Olofsson et al. 2014 eqs. 2-10:

- ``W_h = A_h / A_tot`` (area weight of stratum h), ``p_hj = n_hj / n_h``;
- area proportion of reference class j: ``p_.j = sum_h W_h p_hj``,
  ``SE(p_.j) = sqrt(sum_h W_h^2 p_hj (1 - p_hj) / (n_h - 1))``; area ``A_j = A_tot p_.j``;
- user's accuracy of map class i: ``U_i = p_ii / W_i`` (``W_i`` known, so a stratified mean);
- producer's accuracy of reference class j: ``P_j = p_jj / p_.j`` (a ratio estimator);
- overall accuracy ``O = sum_j p_jj``.

No finite-population correction, as in the paper. Intervals are ``estimate +/- z * SE`` with
``z = 1.96``; every ``*_ci95`` value is that half-width.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from amberwatch.errors import InvalidInputError
from amberwatch.results.change_units import CHANGE_STRATA, change_class

Z_95 = 1.959963984540054
MIN_UNITS_PER_STRATUM = 2


@dataclass(frozen=True)
class StratumCounts:
    """One stratum of the sample: its map class, mapped area and reviewed counts per reference class."""

    name: str
    map_class: str
    area_ha: float
    counts: dict[str, int]
    census: bool = False  # every cell of the stratum was reviewed: it adds no sampling variance

    @property
    def n_units(self) -> int:
        """Number of reviewed sample units in the stratum."""
        return int(sum(self.counts.values()))


@dataclass
class ClassEstimate:
    """Estimates for one class (map class and/or reference class)."""

    name: str
    mapped_area_ha: float
    area_ha: float
    area_se_ha: float
    area_ci95_ha: float
    proportion: float
    proportion_se: float
    users_accuracy: float | None
    users_accuracy_ci95: float | None
    producers_accuracy: float | None
    producers_accuracy_ci95: float | None

    @property
    def area_interval_ha(self) -> tuple[float, float]:
        """(low, high) of the 95% interval of the area, low clipped at 0 ha."""
        return (max(0.0, self.area_ha - self.area_ci95_ha), self.area_ha + self.area_ci95_ha)


@dataclass
class AreaEstimate:
    """The full result: per-class areas and accuracies, overall accuracy, error matrix."""

    classes: list[ClassEstimate]
    overall_accuracy: float
    overall_accuracy_ci95: float
    map_classes: list[str]
    reference_classes: list[str]
    error_matrix: list[list[float]]  # [map class][reference class], area proportions
    total_area_ha: float
    n_units: int
    strata: list[StratumCounts] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats a reader of the figure should know

    def get(self, name: str) -> ClassEstimate:
        """The estimate of one class by name."""
        for c in self.classes:
            if c.name == name:
                return c
        raise InvalidInputError(f"no class {name!r} in the estimate (classes: {[c.name for c in self.classes]})")

    def to_dict(self) -> dict:
        """JSON-ready dict (the shape printed by ``amberwatch area estimate --json``)."""
        classes = []
        for c in self.classes:
            d = asdict(c)
            d["area_interval_ha"] = list(c.area_interval_ha)
            classes.append(d)
        return {
            "classes": classes,
            "overall_accuracy": self.overall_accuracy,
            "overall_accuracy_ci95": self.overall_accuracy_ci95,
            "error_matrix": {
                "map_classes": self.map_classes,
                "reference_classes": self.reference_classes,
                "area_proportions": self.error_matrix,
            },
            "total_area_ha": self.total_area_ha,
            "n_units": self.n_units,
            "notes": list(self.notes),
            "strata": [
                {
                    "name": s.name,
                    "map_class": s.map_class,
                    "area_ha": s.area_ha,
                    "n_units": s.n_units,
                    "counts": dict(s.counts),
                }
                for s in self.strata
            ],
        }


def stratified_proportion(
    weights: np.ndarray, counts: np.ndarray, divisors: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Area proportion of each reference class and its standard error, vectorised over leading axes.

    ``weights``: (..., H) stratum area weights summing to 1; ``counts``: (..., H, J) sample counts; ``divisors``:
    (..., H) of the variance terms, default n_h - 1 (inf for a census stratum). Returns ``(p, se)``, each (..., J).
    Strata need at least 2 units unless a census (not checked here).
    """
    w = np.asarray(weights, dtype=float)
    c = np.asarray(counts, dtype=float)
    n_h = c.sum(axis=-1, keepdims=True)
    div = n_h - 1 if divisors is None else np.asarray(divisors, dtype=float)[..., None]
    p_hj = c / n_h
    p = np.sum(w[..., :, None] * p_hj, axis=-2)
    var = np.sum((w**2)[..., :, None] * p_hj * (1 - p_hj) / div, axis=-2)
    return p, np.sqrt(var)


def estimate_area(
    strata: Sequence[StratumCounts],
    reference_classes: Sequence[str] | None = None,
    z: float = Z_95,
) -> AreaEstimate:
    """Error-adjusted areas, accuracies and error matrix from reviewed counts per stratum."""
    strata = list(strata)
    if not strata:
        raise InvalidInputError("no strata given: need at least one stratum with reviewed sample units")
    ref = _reference_classes(strata, reference_classes)
    map_classes = _unique([s.map_class for s in strata])
    for s in strata:
        _check_stratum(s, ref)
    used = _weighted_strata(strata)
    d = _Design.of(used, ref)
    p_j, se_j = stratified_proportion(d.w_h, d.n_hj, d.fpc_free)

    err = _error_matrix(d, used, map_classes, len(ref))
    # Overall accuracy: per stratum, share of units whose reference class is the stratum's map class.
    overall = float(np.sum(d.w_h * d.correct_h))
    overall_se = float(np.sqrt(np.sum(d.w_h**2 * d.correct_h * (1 - d.correct_h) / d.fpc_free)))
    classes = [
        _class_estimate(
            d,
            used,
            name,
            j,
            p_j[j],
            se_j[j],
            float(err[map_classes.index(name), j]) if name in map_classes else None,
            z,
        )
        for j, name in enumerate(ref)
    ]
    return AreaEstimate(
        classes=classes,
        overall_accuracy=overall,
        overall_accuracy_ci95=z * overall_se,
        map_classes=map_classes,
        reference_classes=ref,
        error_matrix=err.tolist(),
        total_area_ha=d.a_tot,
        n_units=int(d.n_h.sum()),
        strata=strata,
        notes=_zero_omission_notes(used, ref),
    )


def _error_matrix(d: _Design, used: Sequence[StratumCounts], map_classes: list[str], n_ref: int) -> np.ndarray:
    """Error matrix in area proportions: rows = map classes (of all given strata), columns = reference classes."""
    err = np.zeros((len(map_classes), n_ref))
    for s_idx, s in enumerate(used):
        err[map_classes.index(s.map_class)] += d.w_h[s_idx] * d.p_hj[s_idx]
    return err


def _class_estimate(
    d: _Design,
    used: Sequence[StratumCounts],
    name: str,
    j: int,
    p: float,
    se: float,
    correct: float | None,
    z: float,
) -> ClassEstimate:
    """Area, user's and producer's accuracy of class j (area proportion p with its SE; correct: its err[j, j])."""
    users, users_ci = _users_accuracy(d, j, z)
    prod = prod_ci = None
    if p > 0:
        r = correct / p if correct is not None else 0.0
        prod, prod_ci = r, z * _producers_accuracy_se(d, j, r, p)
    return ClassEstimate(
        name=name,
        mapped_area_ha=float(sum(s.area_ha for s in used if s.map_class == name)),
        area_ha=float(d.a_tot * p),
        area_se_ha=float(d.a_tot * se),
        area_ci95_ha=float(z * d.a_tot * se),
        proportion=float(p),
        proportion_se=float(se),
        users_accuracy=users,
        users_accuracy_ci95=users_ci,
        producers_accuracy=prod,
        producers_accuracy_ci95=prod_ci,
    )


def _unique(names: Sequence[str]) -> list[str]:
    """Names in first-seen order, without repeats."""
    out: list[str] = []
    for name in names:
        if name not in out:
            out.append(name)
    return out


def _reference_classes(strata: Sequence[StratumCounts], given: Sequence[str] | None) -> list[str]:
    """The reference classes given, else those counted in the strata (first-seen order)."""
    if given is not None:
        return list(given)
    return _unique([k for s in strata for k in s.counts])


def _check_stratum(s: StratumCounts, ref: Sequence[str]) -> None:
    """InvalidInputError unless the stratum's classes are known, its area finite and its counts whole."""
    unknown = [k for k in s.counts if k not in ref]
    if unknown:
        raise InvalidInputError(f"stratum {s.name!r} has counts for unknown reference class(es) {unknown}")
    if s.map_class not in ref:
        raise InvalidInputError(
            f"map class {s.map_class!r} of stratum {s.name!r} is not among the reference classes {list(ref)}"
        )
    if not (math.isfinite(s.area_ha) and s.area_ha >= 0):
        raise InvalidInputError(f"stratum {s.name!r} has invalid mapped area {s.area_ha!r} ha")
    if any(int(v) != v or v < 0 for v in s.counts.values()):
        raise InvalidInputError(f"stratum {s.name!r} has negative or fractional counts {dict(s.counts)}")


def _weighted_strata(strata: Sequence[StratumCounts]) -> list[StratumCounts]:
    """The strata with mapped area, each checked to have enough reviewed units to estimate its variance."""
    # A stratum with no mapped area carries no weight; drop it rather than demand samples from it.
    used = [s for s in strata if s.area_ha > 0]
    if not used:
        raise InvalidInputError("all strata have zero mapped area")
    for s in used:
        if s.n_units < (1 if s.census else MIN_UNITS_PER_STRATUM):
            raise InvalidInputError(
                f"stratum {s.name!r} has {s.n_units} reviewed sample unit(s); at least "
                f"{MIN_UNITS_PER_STRATUM} are needed to estimate its variance"
            )
    return used


@dataclass(frozen=True)
class _Design:
    """The sample design as arrays over the H used strata (and J reference classes)."""

    a_tot: float  # total mapped area, ha
    w_h: np.ndarray  # (H,) area weights
    n_hj: np.ndarray  # (H, J) reviewed counts
    n_h: np.ndarray  # (H,) reviewed units
    p_hj: np.ndarray  # (H, J) within-stratum proportions
    h_map: np.ndarray  # (H,) reference index of each stratum's map class
    fpc_free: np.ndarray  # (H,) n_h - 1, the divisor of sample variances (inf: a census stratum)
    correct_h: np.ndarray  # (H,) share of units whose reference class is the stratum's map class

    @classmethod
    def of(cls, used: Sequence[StratumCounts], ref: Sequence[str]) -> _Design:
        """Arrays of the used strata."""
        a_h = np.array([s.area_ha for s in used], dtype=float)
        a_tot = float(a_h.sum())
        n_hj = np.array([[s.counts.get(k, 0) for k in ref] for s in used], dtype=float)
        n_h = n_hj.sum(axis=1)
        p_hj = n_hj / n_h[:, None]
        h_map = np.array([list(ref).index(s.map_class) for s in used])
        correct_h = p_hj[np.arange(len(used)), h_map]
        divisors = np.where([s.census for s in used], np.inf, n_h - 1)  # a census stratum has no sampling error
        return cls(a_tot, a_h / a_tot, n_hj, n_h, p_hj, h_map, divisors, correct_h)


def _users_accuracy(d: _Design, j: int, z: float) -> tuple[float | None, float | None]:
    """User's accuracy of map class j and its interval half-width (None, None when no stratum maps j)."""
    in_class = d.h_map == j
    w_i = float(d.w_h[in_class].sum())
    if not w_i > 0:
        return None, None
    share = d.w_h[in_class] / w_i
    ph = d.correct_h[in_class]
    users = float(np.sum(share * ph))
    return users, z * float(np.sqrt(np.sum(share**2 * ph * (1 - ph) / d.fpc_free[in_class])))


def _producers_accuracy_se(d: _Design, j: int, r: float, p_j: float) -> float:
    """SE of the producer's accuracy r of reference class j (area proportion p_j), Stehman 2014 eq. 28."""
    # Ratio estimator R = Y/X with y = [map j and ref j], x = [ref j].
    x = d.p_hj[:, j]
    y = np.where(d.h_map == j, x, 0.0)
    # Within-stratum sample (co)variances of 0/1 indicators, divisor n_h - 1.
    s_yy = y * (1 - y) * d.n_h / d.fpc_free
    s_xx = x * (1 - x) * d.n_h / d.fpc_free
    s_xy = (y - y * x) * d.n_h / d.fpc_free
    var = np.sum(d.w_h**2 * (s_yy + r**2 * s_xx - 2 * r * s_xy) / d.n_h) / p_j**2
    return float(np.sqrt(max(var, 0.0)))


def _zero_omission_notes(strata: Sequence[StratumCounts], ref: Sequence[str]) -> list[str]:
    """Caveats for strata where a class was never found: their variance term is 0, so the interval is too tight."""
    target = "mining" if "mining" in ref else ref[0]
    notes = []
    for s in strata:
        if s.map_class != target and s.counts.get(target, 0) == 0:
            bound = 3 / s.n_units * s.area_ha  # rule of three: 95% upper bound on a proportion when 0 of n
            notes.append(
                f"none of the {s.n_units} reviewed units of stratum {s.name!r} was {target!r}; the interval "
                f"counts no {target!r} there, though up to {bound:,.1f} ha of it could be missed "
                "(95% upper bound, rule of three)"
            )
    return notes


def read_counts_csv(path: str | Path) -> list[StratumCounts]:
    """Read a counts table: header ``map_class,mapped_area_ha,<reference class>,...`` (optional ``stratum``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInputError(f"cannot read counts file {str(p)!r}: {exc}") from exc
    return parse_counts_csv(text, source=str(p))


def parse_counts_csv(text: str, source: str = "<counts>") -> list[StratumCounts]:
    """Parse the counts table text (see ``read_counts_csv``)."""
    reader = csv.reader(io.StringIO(text))
    rows = [r for r in reader if any(cell.strip() for cell in r)]
    if not rows:
        raise InvalidInputError(f"counts file {source!r} is empty")
    layout = _CountsLayout.of([h.strip() for h in rows[0]], source)
    strata: list[StratumCounts] = []
    for line_no, row in enumerate(rows[1:], start=2):
        stratum = layout.stratum(row, line_no)
        if any(s.name == stratum.name for s in strata):
            raise InvalidInputError(f"counts file {source!r} row {line_no}: stratum {stratum.name!r} appears twice")
        strata.append(stratum)
    if not strata:
        raise InvalidInputError(f"counts file {source!r} has a header but no rows")
    return strata


@dataclass(frozen=True)
class _CountsLayout:
    """Where the columns of a counts table are (from its header)."""

    source: str
    header: list[str]
    ref_cols: list[int]
    i_map: int
    i_area: int
    i_stratum: int | None

    @classmethod
    def of(cls, header: list[str], source: str) -> _CountsLayout:
        """The layout of a stripped header, or InvalidInputError naming what is missing or repeated."""
        for required in ("map_class", "mapped_area_ha"):
            if required not in header:
                raise InvalidInputError(
                    f"counts file {source!r} has no {required!r} column; header must be "
                    "map_class,mapped_area_ha,<reference class>,..."
                )
        ref_cols = [i for i, h in enumerate(header) if h not in ("map_class", "mapped_area_ha", "stratum")]
        if not ref_cols:
            raise InvalidInputError(f"counts file {source!r} has no reference class columns")
        ref_names = [header[i] for i in ref_cols]
        if len(set(ref_names)) != len(ref_names) or any(not h for h in ref_names):
            raise InvalidInputError(f"counts file {source!r} has empty or repeated reference class columns {ref_names}")
        i_stratum = header.index("stratum") if "stratum" in header else None
        return cls(source, header, ref_cols, header.index("map_class"), header.index("mapped_area_ha"), i_stratum)

    def stratum(self, row: list[str], line_no: int) -> StratumCounts:
        """One data row as a stratum, or InvalidInputError naming the row and the bad field."""
        where = f"counts file {self.source!r} row {line_no}"
        if len(row) != len(self.header):
            raise InvalidInputError(f"{where} has {len(row)} fields, header has {len(self.header)}")
        map_class = row[self.i_map].strip()
        name = row[self.i_stratum].strip() if self.i_stratum is not None else map_class
        try:
            area = float(row[self.i_area])
        except ValueError:
            raise InvalidInputError(f"{where}: mapped_area_ha {row[self.i_area]!r} is not a number") from None
        counts = {self.header[i]: _count(row[i], self.header[i], where) for i in self.ref_cols}
        return StratumCounts(name=name, map_class=map_class, area_ha=area, counts=counts)


def _count(value: str, column: str, where: str) -> int:
    """A count cell as a non-negative integer, or InvalidInputError."""
    try:
        v = float(value)
    except ValueError:
        raise InvalidInputError(f"{where}: count {value!r} for {column!r} is not a number") from None
    if v < 0 or v != int(v):
        raise InvalidInputError(f"{where}: count {value!r} for {column!r} is not a non-negative integer")
    return int(v)


def sample_size_for_target_se(users_accuracy: Sequence[float], weights: Sequence[float], target_se: float) -> int:
    """Total sample size for a target standard error (Olofsson et al. 2014 eq. 13).

    ``n = (sum_i W_i S_i / S(O))^2`` with ``S_i = sqrt(U_i (1 - U_i))`` from anticipated user's
    accuracies ``U_i`` and map-class area weights ``W_i``.
    """
    u = np.asarray(users_accuracy, dtype=float)
    w = np.asarray(weights, dtype=float)
    if u.shape != w.shape or u.ndim != 1 or u.size == 0:
        raise InvalidInputError(f"need one user's accuracy per weight: got {list(u)} and {list(w)}")
    if np.any((u < 0) | (u > 1)):
        raise InvalidInputError(f"user's accuracies {list(u)} must be within 0..1")
    if np.any(w < 0) or not math.isclose(float(w.sum()), 1.0, abs_tol=1e-3):
        raise InvalidInputError(f"weights {list(w)} must be non-negative and sum to 1 (sum {w.sum():g})")
    if not (target_se > 0 and math.isfinite(target_se)):
        raise InvalidInputError(f"target standard error {target_se!r} must be a positive number")
    s = np.sqrt(u * (1 - u))
    return math.ceil((float(np.sum(w * s)) / target_se) ** 2 - 1e-9)


def _fmt_ha_pair(lo: float, hi: float) -> tuple[str, str]:
    """Both bounds with the same decimals: whole hectares from 10 ha up, else 1-2 decimals."""
    decimals = 0 if hi >= 10 else (1 if hi >= 1 else 2)
    return f"{lo:,.{decimals}f}", f"{hi:,.{decimals}f}"


def estimate_change(
    strata_area_ha: Mapping[str, float],
    answers: Iterable[tuple[str, str, str, int]],
    z: float = Z_95,
    census: Iterable[str] = (),
) -> AreaEstimate:
    """Change areas between two dates from a stratified sample labelled at both (the one-date estimator on the
    change classes: each change stratum is its own map class).

    ``strata_area_ha``: change stratum -> its area; ``answers``: (stratum, earlier class, later class, units),
    each class mining or not_mining; ``census``: strata whose every cell was reviewed. The area of change class
    "new" is the hectares newly dug.
    """
    counts = {s: {c: 0 for c in CHANGE_STRATA} for s in strata_area_ha}
    for stratum, ref_from, ref_to, n in answers:
        if stratum not in counts:
            raise InvalidInputError(f"units of stratum {stratum!r}, which is not one of {list(strata_area_ha)}")
        counts[stratum][change_class(ref_from, ref_to)] += n
    whole = set(census)
    strata = [StratumCounts(s, s, float(a), counts[s], s in whole) for s, a in strata_area_ha.items()]
    return estimate_area(strata, reference_classes=list(CHANGE_STRATA), z=z)


def change_sentence(estimate: AreaEstimate, from_date: str, to_date: str, place: str = "the scanned area") -> str:
    """One printable sentence with the 95% interval of the hectares newly dug between two dates."""
    lo_text, hi_text = _fmt_ha_pair(*estimate.get("new").area_interval_ha)
    return (
        f"Between {lo_text} and {hi_text} hectares of land were newly dug in {place} between {from_date} and "
        f"{to_date} (95% confidence), based on {estimate.n_units:,} sample points reviewed at both dates."
    )


def journalist_sentence(estimate: AreaEstimate, class_name: str | None = None, place: str = "the scanned area") -> str:
    """One printable sentence with the 95% interval of a class's area (default: 'mining', else the first)."""
    if class_name is None:
        class_name = "mining" if any(c.name == "mining" for c in estimate.classes) else estimate.classes[0].name
    c = estimate.get(class_name)
    lo_text, hi_text = _fmt_ha_pair(*c.area_interval_ha)
    what = "were mined" if class_name == "mining" else f"were classed as {class_name.replace('_', ' ')}"
    return (
        f"Between {lo_text} and {hi_text} hectares of land {what} in {place} "
        f"(95% confidence), based on {estimate.n_units:,} reviewed sample points."
    )


def format_table(estimate: AreaEstimate, sentence: str | None = None) -> str:
    """Readable plain-text report of an estimate, ending with its sentence (default: ``journalist_sentence``)."""

    def pct(v: float | None, ci: float | None) -> str:
        return "-" if v is None else f"{v:.3f} ± {ci:.3f}"

    lines = [
        f"{'class':<20} {'mapped ha':>14} {'estimated ha':>14} {'± 95% ha':>12} {'user acc.':>15} {'producer acc.':>15}"
    ]
    lines.extend(
        f"{c.name:<20} {c.mapped_area_ha:>14,.1f} {c.area_ha:>14,.1f} {c.area_ci95_ha:>12,.1f} "
        f"{pct(c.users_accuracy, c.users_accuracy_ci95):>15} "
        f"{pct(c.producers_accuracy, c.producers_accuracy_ci95):>15}"
        for c in estimate.classes
    )
    lines.append(f"overall accuracy: {estimate.overall_accuracy:.3f} ± {estimate.overall_accuracy_ci95:.3f}")
    lines.append(f"total area: {estimate.total_area_ha:,.1f} ha; reviewed sample units: {estimate.n_units}")
    lines.append("")
    lines.append("error matrix (area proportions; rows = map class, columns = reference class):")
    width = max(12, *(len(r) + 2 for r in estimate.reference_classes))
    lines.append(" " * 20 + "".join(f"{r:>{width}}" for r in estimate.reference_classes))
    for name, row in zip(estimate.map_classes, estimate.error_matrix):
        lines.append(f"{name:<20}" + "".join(f"{v:>{width}.4f}" for v in row))
    lines.append("")
    lines.extend(f"note: {n}" for n in estimate.notes)
    lines.append("")
    lines.append(sentence or journalist_sentence(estimate))
    return "\n".join(lines)
