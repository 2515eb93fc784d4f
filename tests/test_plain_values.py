"""Plain values module globals hold: sized as their containers grow, each counted once."""

from __future__ import annotations

import sys
import types

from pympler.asizeof import asizeof

from sqldiag.capture.probes.imported_code import ImportedCode
from sqldiag.capture.probes.plain_values import GlobalValues


def _module(name: str, **values: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(values)
    sys.modules[name] = module
    return module


def test_a_globals_growth_is_counted_once_from_the_baseline():
    """A dict that held 1,000 entries at the baseline and gained 20,000 (tuples of a
    string and an int, none tracked by the collector): its growth is counted, not what
    it held before; a second module that imported the same dict does not count it
    again."""
    table = {f"old {i:05d}": (f"value {i}" * 4, i * 1000) for i in range(1000)}
    owner = _module("_sqldiag_test_plain_owner", TABLE=table)
    try:
        values = GlobalValues()
        before = asizeof(table) - sys.getsizeof(table)
        for i in range(20_000):
            table[f"new {i:05d}"] = (f"value {i}" * 4, i * 1000)
        _module("_sqldiag_test_plain_user", TABLE=table)  # `from owner import TABLE`
        grown = values.grown()
        mine = [held for held in grown if held.container is table]
        assert len(mine) == 1, [held.name for held in grown]
        expected = asizeof(table) - sys.getsizeof(table) - before
        assert 0.9 * expected < mine[0].untracked < 1.1 * expected, (mine[0], expected)
        assert mine[0].name.endswith(".TABLE")
        assert values.grown()[0].untracked == mine[0].untracked  # unchanged: not re-sized
    finally:
        sys.modules.pop("_sqldiag_test_plain_user", None)
        del sys.modules[owner.__name__]


def test_a_new_modules_table_is_counted_here_not_as_imported_code():
    """The constant tables of a module imported during the work were counted by
    ImportedCode; they are now this module's (counted once, from nothing), and the
    imported code no longer counts them."""
    code = ImportedCode()
    values = GlobalValues()
    table = {i + 1000: f"name {i}" * 3 for i in range(5000)}
    module = _module("_sqldiag_test_plain_new", TABLE=table)
    try:
        imported = code.bytes_now().total
        held = {h.name: h.untracked for h in values.grown()}
        # the dict holds only ints and strings: the collector does not track it either
        expected = asizeof(table)
        assert 0.9 * expected < held["_sqldiag_test_plain_new.TABLE"] < 1.1 * expected
        assert imported < 0.1 * expected, imported
    finally:
        del sys.modules[module.__name__]
