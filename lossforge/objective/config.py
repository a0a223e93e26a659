"""Objective configs: YAML (or a dict) -> validated, pure data, with every problem reported at once.

A config names weighted loss terms, regularizers and a weighting strategy::

    name: scene_depth
    terms:
      scene:
        loss: softmax_cross_entropy          # a registered loss name or alias
        weight: 2.0                          # the term's multiplier (default 1.0)
        inputs: {onehot_labels: scene_labels, logits: scene_logits}   # loss argument -> batch key
        params: {label_smoothing: 0.1}       # constant loss parameters
        reduction: weighted_mean             # optional (default: the loss's, TF's default)
    regularization:
      l2: {type: l2, scale: 1.0e-4, params: [conv1_w, fc_w]}
    weighting: static                        # or {strategy: uncertainty} / {strategy: dwa, temperature: 2.0}

Configs are data, never code. Loading uses YAML's safe loader only (a tag such as
``!!python/object`` is refused and nothing runs); anchors and merge keys work, but a file over
256 KiB, nesting deeper than 64 levels or aliases expanding to more than 100,000 nodes are
refused before anything is built from them. ``${ENV_VAR}`` (or ``${ENV_VAR:-default}``) is
interpolated in strings; an unset variable without a default is an error, not an empty string.
``include: other.yaml`` merges another config (relative to this one) under this one's keys; it
must resolve inside the directory of the config being loaded unless ``include_roots=`` names
more directories. Keys starting with ``x-`` are ignored anywhere: a place to define anchors.
`ConfigError` lists every problem with its file, line, column and key path.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidArgumentError
from ..reduction import Reduction, resolve_reduction

__all__ = ["ConfigError", "ObjectiveConfig", "RegularizerConfig", "TermConfig", "WeightingConfig",
           "parse_config"]

REGULARIZER_TYPES = ("l1", "l2", "l1_l2")
WEIGHTING_STRATEGIES = ("static", "uncertainty", "dwa")
_TOP_KEYS = ("name", "terms", "regularization", "weighting", "include")
_TERM_KEYS = ("loss", "weight", "inputs", "params", "reduction")
_REGULARIZER_KEYS = ("type", "scale", "scale_l1", "scale_l2", "params")
_WEIGHTING_KEYS = ("strategy", "temperature")


class ConfigError(InvalidArgumentError):
    """A config has problems; ``.problems`` lists them, each naming where and what."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the objective config:\n{lines}")


@dataclass(frozen=True)
class TermConfig:
    name: str
    loss: str
    weight: float = 1.0
    inputs: dict = field(default_factory=dict)   # loss argument -> batch key
    params: dict = field(default_factory=dict)
    reduction: Reduction | None = None


@dataclass(frozen=True)
class RegularizerConfig:
    name: str
    type: str
    params: tuple[str, ...]
    scale_l1: float = 0.0
    scale_l2: float = 0.0


@dataclass(frozen=True)
class WeightingConfig:
    strategy: str = "static"
    temperature: float = 2.0


@dataclass(frozen=True)
class ObjectiveConfig:
    name: str
    terms: tuple[TermConfig, ...]
    regularizers: tuple[RegularizerConfig, ...] = ()
    weighting: WeightingConfig = WeightingConfig()

    def to_dict(self) -> dict:
        """The config as plain data that `parse_config` turns back into an equal config."""
        terms = {}
        for t in self.terms:
            entry: dict[str, Any] = {"loss": t.loss, "weight": t.weight, "inputs": dict(t.inputs)}
            if t.params:
                entry["params"] = dict(t.params)
            if t.reduction is not None:
                entry["reduction"] = t.reduction.value
            terms[t.name] = entry
        out: dict[str, Any] = {"name": self.name, "terms": terms}
        if self.regularizers:
            out["regularization"] = {}
            for r in self.regularizers:
                entry = {"type": r.type, "params": list(r.params)}
                if r.type == "l1_l2":
                    entry.update(scale_l1=r.scale_l1, scale_l2=r.scale_l2)
                else:
                    entry["scale"] = r.scale_l1 if r.type == "l1" else r.scale_l2
                out["regularization"][r.name] = entry
        if self.weighting.strategy == "dwa":
            out["weighting"] = {"strategy": "dwa", "temperature": self.weighting.temperature}
        else:
            out["weighting"] = self.weighting.strategy
        return out


# --- loading -------------------------------------------------------------------------------------

#: Limits on a config, far above any real objective and far below what hurts: a larger, deeper
#: or more aliased config is refused with a `ConfigError` before it is parsed further.
MAX_CONFIG_BYTES = 256 * 1024   # per file (or YAML text); refused before parsing
MAX_DEPTH = 64                  # nesting of mappings and sequences
MAX_NODES = 100_000             # nodes with every alias expanded (the "billion laughs" guard)
MAX_INCLUDE_DEPTH = 16          # chained `include:`s


def parse_config(source, *, include_roots=()) -> ObjectiveConfig:
    """A validated `ObjectiveConfig` from a YAML path, YAML text or a dict.

    Args:
      source: a path to a YAML file (``str`` ending in .yaml/.yml, or ``os.PathLike``), YAML
        text, a dict or an `ObjectiveConfig`.
      include_roots: directories that ``include:`` may also read from. By default an include
        must resolve (symlinks followed) inside the directory of the config being loaded (the
        current directory for YAML text); naming more directories is the explicit opt-in.

    Raises:
      ConfigError: listing every problem found (file:line:column, key path, expected, found).
    """
    if isinstance(source, ObjectiveConfig):
        return source
    if isinstance(source, dict):
        return _Validator("<dict>", {}).config(source)
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source
                                           and source.strip().endswith((".yaml", ".yml"))):
        path = Path(source)
        try:
            exists = path.is_file()
        except (OSError, ValueError):  # e.g. a NUL byte in the name
            exists = False
        if not exists:
            raise ConfigError(str(path), [f"no such config file: {path}"])
        roots = _roots(path.resolve().parent, include_roots)
        data, marks = _load_yaml(_read(path, str(path)), str(path), path.parent, set(), roots)
        return _Validator(str(path), marks).config(data)
    if isinstance(source, str):
        data, marks = _load_yaml(source, "<yaml text>", Path.cwd(), set(),
                                 _roots(Path.cwd().resolve(), include_roots))
        return _Validator("<yaml text>", marks).config(data)
    raise InvalidArgumentError(
        f"load_objective takes a path to a YAML file, YAML text or a dict; got {type(source).__name__}.")


def _roots(own: Path, extra) -> tuple[Path, ...]:
    if isinstance(extra, (str, os.PathLike)):
        extra = (extra,)
    try:
        return (own,) + tuple(Path(r).resolve() for r in extra)
    except (TypeError, ValueError, OSError) as exc:
        raise InvalidArgumentError(f"`include_roots` must be a sequence of directories; got "
                                   f"{extra!r} ({exc}).") from None


def _read(path: Path, source: str) -> str:
    """The text of a config file: at most MAX_CONFIG_BYTES of UTF-8."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(source, [f"cannot read {path}: {exc}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: an "
                                   f"objective config is a small file (refused unread)"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"{path} is not UTF-8 text: {exc}"]) from None


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _TooComplex(yaml.YAMLError):
    def __init__(self, problem: str, mark=None):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (no tag constructs a Python object) with bounded nesting."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooComplex(f"nested more than {MAX_DEPTH} levels deep",
                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(node, memo: dict, active: set) -> int:
    """The number of nodes ``node`` stands for with every alias expanded (memoised, so linear in
    the number of distinct nodes); a node that contains itself is refused."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _TooComplex("an alias refers to a node that contains it (a recursive structure)",
                          node.start_mark)
    active.add(key)
    size = 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, active) + _expanded_size(v, memo, active)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, memo, active)
    active.discard(key)
    memo[key] = size
    return size


def _parse(text: str, source: str):
    """(node, data) of one YAML document, refused early when it is too large, deep or aliased."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"{source}: the config is larger than "
                                   f"{MAX_CONFIG_BYTES // 1024} KiB (refused unparsed)"])
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            size = _expanded_size(node, {}, set())
            if size > MAX_NODES:
                raise _TooComplex(f"the document expands to {size} nodes with its aliases "
                                  f"expanded, more than {MAX_NODES} (alias bomb?)", node.start_mark)
        return node, (loader.construct_document(node) if node is not None else None)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
            problem = (f"{problem}: tags that build Python objects are not allowed (configs are "
                       f"data, loaded by YAML's safe loader); nothing was run")
        kind = "config too complex" if isinstance(exc, _TooComplex) else "invalid YAML"
        raise ConfigError(source, [f"{where}: {kind}: {problem}"]) from None
    finally:
        loader.dispose()


def _load_yaml(text: str, source: str, base: Path, seen: set, roots: tuple[Path, ...]):
    """(data, marks): data from the safe loader, marks maps key paths to 'file:line:col'."""
    node, data = _parse(text, source)
    marks: dict[tuple, str] = {}
    if node is not None:
        _collect_marks(node, (), source, marks)
    problems: list[str] = []
    data = _interpolate(data, (), marks, source, problems)
    if problems:
        raise ConfigError(source, problems)
    if isinstance(data, dict) and "include" in data:
        data = _include(data, source, base, seen, marks, roots)
    return data, marks


def _collect_marks(node, path: tuple, source: str, marks: dict) -> None:
    marks.setdefault(path, f"{source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}")
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value in seen and key.value != "<<":
                # YAML loaders keep the last of duplicate keys silently: report it instead
                marks.setdefault(("__duplicates__",), [])
                marks[("__duplicates__",)].append(
                    (path + (key.value,), f"{source}:{key.start_mark.line + 1}:"
                                          f"{key.start_mark.column + 1}"))
            if isinstance(key, yaml.ScalarNode):
                seen.add(key.value)
                if key.value == "<<":  # merge key: the merged mapping's keys live here
                    for merged in (value.value if isinstance(value, yaml.SequenceNode) else [value]):
                        _collect_marks(merged, path, source, marks)
                    continue
                marks.setdefault(path + (key.value,), f"{source}:{key.start_mark.line + 1}:"
                                                      f"{key.start_mark.column + 1}")
                _collect_marks(value, path + (key.value,), source, marks)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect_marks(item, path + (i,), source, marks)


def _interpolate(value, path: tuple, marks: dict, source: str, problems: list):
    """``${VAR}`` / ``${VAR:-default}`` replaced in every string; an unset variable without a
    default is a problem (never an empty string). A string that is only a number after
    replacement becomes that number."""
    if isinstance(value, str):
        def env(match):
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            where = marks.get(path) or source
            key = ".".join(str(p) for p in path) or "(top level)"
            problems.append(f"{where}: `{key}`: environment variable ${{{name}}} is not set "
                            f"(set it, or write ${{{name}:-default}} to give a default)")
            return match.group(0)
        replaced = _ENV.sub(env, value)
        if replaced != value:
            return _scalar(replaced)
        return value
    if isinstance(value, dict):
        return {k: _interpolate(v, path + (k,), marks, source, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, path + (i,), marks, source, problems) for i, v in enumerate(value)]
    return value


def _scalar(text: str):
    """``text`` as YAML reads a plain scalar (a number, bool or null), else the text itself."""
    if not text.strip() or len(text) > 100:
        return text
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, type(None))) else text


def _include(data: dict, source: str, base: Path, seen: set, marks: dict,
             roots: tuple[Path, ...]) -> dict:
    target = data.get("include")
    where = marks.get(("include",), source)
    if not isinstance(target, str):
        raise ConfigError(source, [f"{where}: `include` must be a file name, found {target!r}"])
    if len(seen) >= MAX_INCLUDE_DEPTH:
        raise ConfigError(source, [f"{where}: `include`s are chained more than "
                                   f"{MAX_INCLUDE_DEPTH} deep"])
    try:
        path = (base / target).resolve()
        inside = any(path.is_relative_to(root) for root in roots)
        exists = path.is_file()
    except (OSError, ValueError) as exc:
        raise ConfigError(source, [f"{where}: `include: {target}`: {exc}"]) from None
    if not inside:
        raise ConfigError(source, [
            f"{where}: `include: {target}` resolves to {path}, outside the config's directory "
            f"{roots[0]}; an include may only read files there unless asked: pass "
            f"include_roots=[...] to load_objective/parse_config to allow other directories"])
    if path in seen:
        raise ConfigError(source, [f"`include: {target}` includes itself (cycle)"])
    if not exists:
        raise ConfigError(source, [f"{where}: included file {target} not found (looked in {base})"])
    included, included_marks = _load_yaml(_read(path, str(path)), str(path), path.parent,
                                          seen | {path}, roots)
    if not isinstance(included, dict):
        raise ConfigError(str(path), ["an included config must be a mapping"])
    for key, mark in included_marks.items():
        marks.setdefault(key, mark)
    merged = _deep_merge(included, {k: v for k, v in data.items() if k != "include"})
    return merged


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# --- validation ------------------------------------------------------------------------------

class _Validator:
    """Checks a config's data, collecting every problem before raising one `ConfigError`."""

    def __init__(self, source: str, marks: dict):
        self.source = source
        self.marks = marks
        self.problems: list[str] = []

    def problem(self, path: tuple, message: str) -> None:
        where = self.marks.get(path) or self._nearest(path) or self.source
        key = ".".join(str(p) for p in path) or "(top level)"
        self.problems.append(f"{where}: `{key}`: {message}")

    def _nearest(self, path: tuple):
        while path:
            path = path[:-1]
            if path in self.marks:
                return self.marks[path]
        return self.marks.get(())

    def unknown_keys(self, mapping: dict, allowed, path: tuple) -> None:
        for key in mapping:
            if isinstance(key, str) and key.startswith("x-"):
                continue  # extension keys: a place for YAML anchors, ignored
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.problem(path + (key,), f"unknown key {key!r}{hint} (allowed: "
                                            f"{', '.join(allowed)})")

    def number(self, value, path: tuple, what: str, positive: bool = False):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(path, f"{what} must be a number, found {type(value).__name__} {value!r}")
            return None
        if not math.isfinite(value):
            self.problem(path, f"{what} must be finite, found {value!r}")
            return None
        if positive and value <= 0:
            self.problem(path, f"{what} must be > 0, found {value!r}")
            return None
        return float(value)

    def config(self, data) -> ObjectiveConfig:
        for path, where in self.marks.pop(("__duplicates__",), []):
            key = ".".join(str(p) for p in path)
            self.problems.append(f"{where}: `{key}`: duplicate key: it is defined more than once "
                                 f"in the same mapping (names must be unique)")
        if not isinstance(data, dict):
            raise ConfigError(self.source, [f"{self.source}: an objective config is a mapping with "
                                            f"a `terms:` section, found {type(data).__name__}"])
        self.unknown_keys(data, _TOP_KEYS, ())
        name = data.get("name", "objective")
        if not isinstance(name, str):
            self.problem(("name",), f"must be a string, found {name!r}")
            name = "objective"
        terms = self.terms(data.get("terms"))
        regularizers = self.regularizers(data.get("regularization") or {})
        names = [t.name for t in terms] + [r.name for r in regularizers]
        for duplicate in sorted({n for n in names if names.count(n) > 1}):
            self.problem(("regularization", duplicate),
                         f"component name {duplicate!r} is used by a term and a regularizer; "
                         f"component names must be unique")
        weighting = self.weighting(data.get("weighting", "static"))
        if not terms and not regularizers and not self.problems:
            self.problem(("terms",), "the objective has no terms: add at least one under `terms:`")
        if self.problems:
            raise ConfigError(self.source, self.problems)
        return ObjectiveConfig(name, tuple(terms), tuple(regularizers), weighting)

    def terms(self, terms) -> list[TermConfig]:
        if terms is None:
            self.problem(("terms",), "missing: an objective needs a `terms:` mapping of "
                                     "component name -> {loss, weight, inputs}")
            return []
        if not isinstance(terms, dict):
            self.problem(("terms",), f"must be a mapping of component name -> term, found "
                                     f"{type(terms).__name__}")
            return []
        return [t for t in (self.term(str(n), body) for n, body in terms.items()) if t is not None]

    def term(self, name: str, body) -> TermConfig | None:
        from .. import registry
        path = ("terms", name)
        if not isinstance(body, dict):
            self.problem(path, f"a term is a mapping with `loss:` and `inputs:`, found {body!r}")
            return None
        self.unknown_keys(body, _TERM_KEYS, path)
        loss = body.get("loss")
        spec = None
        if not isinstance(loss, str):
            self.problem(path + ("loss",), f"missing or not a name: give a registered loss, "
                                           f"found {loss!r}")
        else:
            try:
                spec = registry.get(loss)
            except registry.UnknownLossError:
                close = difflib.get_close_matches(loss, registry.names(include_aliases=True), n=3,
                                                  cutoff=0.5)
                hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
                self.problem(path + ("loss",), f"unknown loss {loss!r}{hint} (`lossforge list` "
                                               f"shows the registered losses)")
        weight = self.number(body.get("weight", 1.0), path + ("weight",), "weight")
        inputs = body.get("inputs")
        if not isinstance(inputs, dict) or not all(isinstance(v, str) for v in inputs.values()):
            self.problem(path + ("inputs",), f"must map loss arguments to batch keys, e.g. "
                                             f"{{labels: y, predictions: y_hat}}; found {inputs!r}")
            inputs = {}
        params = body.get("params") or {}
        if not isinstance(params, dict):
            self.problem(path + ("params",), f"must be a mapping of parameter -> value, found "
                                             f"{params!r}")
            params = {}
        reduction = body.get("reduction")
        if reduction is not None:
            valid = ", ".join(sorted({r.value for r in Reduction} - {"none"}))
            try:
                reduction = resolve_reduction(reduction)
            except InvalidArgumentError:
                self.problem(path + ("reduction",), f"invalid reduction {reduction!r}; valid: {valid}")
                reduction = None
            if reduction is Reduction.NONE:
                self.problem(path + ("reduction",), f"a term must reduce to one number; 'none' is "
                                                    f"not allowed here (valid: {valid})")
                reduction = None
        if spec is not None:
            expected = set(spec.inputs) | {"weights"}
            for arg in inputs:
                if arg not in expected:
                    close = difflib.get_close_matches(arg, sorted(expected), n=1, cutoff=0.5)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.problem(path + ("inputs", arg), f"{spec.name} takes no input {arg!r}{hint} "
                                                         f"(its inputs: {', '.join(spec.inputs)}, "
                                                         f"and optional weights)")
            for arg in spec.inputs:
                if arg not in inputs:
                    self.problem(path + ("inputs",), f"missing input {arg!r} of {spec.name} (map it "
                                                     f"to a batch key: {arg}: <key>)")
            from ..registry import _prepare_arguments
            accepted = list(spec.param_names) + _prepare_arguments(spec)
            for param, value in params.items():
                if param not in accepted:
                    close = difflib.get_close_matches(str(param), accepted, n=1, cutoff=0.5)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.problem(path + ("params", param),
                                 f"{spec.name} takes no parameter {param!r}{hint} (its parameters: "
                                 f"{', '.join(accepted) or 'none'})")
                elif param in spec.param_names:
                    self.number(value, path + ("params", param), f"parameter {param!r}")
        return TermConfig(name, spec.name if spec else str(loss), weight or 0.0, dict(inputs),
                          dict(params), reduction)

    def regularizers(self, section) -> list[RegularizerConfig]:
        if not isinstance(section, dict):
            self.problem(("regularization",), f"must be a mapping of name -> regularizer, found "
                                              f"{type(section).__name__}")
            return []
        out = []
        for name, body in section.items():
            path = ("regularization", str(name))
            if not isinstance(body, dict):
                self.problem(path, f"a regularizer is a mapping with type/scale/params, found {body!r}")
                continue
            self.unknown_keys(body, _REGULARIZER_KEYS, path)
            kind = body.get("type")
            if kind not in REGULARIZER_TYPES:
                self.problem(path + ("type",), f"must be one of {', '.join(REGULARIZER_TYPES)}, "
                                               f"found {kind!r}")
                continue
            params = body.get("params")
            if isinstance(params, str):
                params = [params]
            if not params or not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                self.problem(path + ("params",), f"a regularizer needs `params:`, a list of keys of "
                                                 f"the params mapping passed at call time; found "
                                                 f"{params!r}")
                continue
            if kind == "l1_l2":
                l1 = self.number(body.get("scale_l1", 0.0), path + ("scale_l1",), "scale_l1")
                l2 = self.number(body.get("scale_l2", 0.0), path + ("scale_l2",), "scale_l2")
            else:
                scale = self.number(body.get("scale"), path + ("scale",), "scale")
                l1, l2 = (scale, 0.0) if kind == "l1" else (0.0, scale)
            out.append(RegularizerConfig(str(name), kind, tuple(params), l1 or 0.0, l2 or 0.0))
        return out

    def weighting(self, section) -> WeightingConfig:
        path = ("weighting",)
        if isinstance(section, str):
            section = {"strategy": section}
        if not isinstance(section, dict):
            self.problem(path, f"must be a strategy name or a mapping, found {section!r}")
            return WeightingConfig()
        self.unknown_keys(section, _WEIGHTING_KEYS, path)
        strategy = section.get("strategy", "static")
        if strategy not in WEIGHTING_STRATEGIES:
            close = difflib.get_close_matches(str(strategy), WEIGHTING_STRATEGIES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.problem(path + ("strategy",), f"unknown strategy {strategy!r}{hint} (valid: "
                                               f"{', '.join(WEIGHTING_STRATEGIES)})")
            return WeightingConfig()
        temperature = self.number(section.get("temperature", 2.0), path + ("temperature",),
                                  "temperature", positive=True)
        return WeightingConfig(strategy, temperature or 2.0)
