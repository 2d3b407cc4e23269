"""Expected capability skips, made explicit.

Contract tests switch themselves off with ``needs(db, "capability", ...)`` or by reading
``db.capabilities``; a flag flipped by mistake would silently skip (or wrongly run) a
whole family of tests. This file pins, per backend, every flag the tests switch on,
and which tests each flag switches off, so such a change fails here and must be made
on purpose (edit FLAGS or GATES below along with the change).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import bulkops

TESTS = Path(__file__).resolve().parent

# The flags tests gate on, per backend (Capabilities.name).
FLAGS: dict[str, dict[str, bool | int | None]] = {
    "sqlite": {
        "columnar": True,
        "float_nan": False, "decimal_digits": 15,
        "transactions": True, "parallel_writes": False, "one_writer": True,
        "statement_timeout": False, "text_nul": True,
        "keeps_utc_offset": True, "items": False, "row_locks": True, "exact_counts": True,
        "declared_columns": True, "unique_constraints": True, "run_log": True,
        "set_based_diff": True, "read_ahead": False,
    },
    "postgresql": {
        "columnar": True,
        "float_nan": True, "decimal_digits": None,
        "transactions": True, "parallel_writes": True, "one_writer": False,
        "statement_timeout": True, "text_nul": False, "keeps_utc_offset": False,
        "items": False, "row_locks": True, "exact_counts": True, "declared_columns": True,
        "unique_constraints": True, "run_log": True, "set_based_diff": True,
        "read_ahead": True,
    },
    "dynamodb": {
        "columnar": False,
        "float_nan": False, "decimal_digits": None,
        "transactions": False, "parallel_writes": True, "one_writer": False,
        "statement_timeout": False, "text_nul": True, "keeps_utc_offset": False,
        "items": True, "row_locks": False, "exact_counts": False, "declared_columns": False,
        "unique_constraints": False, "run_log": False, "set_based_diff": False,
        "read_ahead": False,
    },
}  # fmt: skip

# Which capability switches which test off (``needs(...)`` called in the test itself).
_GATES_BY_FILE: dict[str, dict[str, str]] = {
    "test_bench.py": {
        "test_statement_counts_at_the_issues_sizes": "transactions",
        "test_the_counter_sees_both_sides_alike": "transactions",
    },
    "test_columnar.py": {
        "test_interrupted_arrow_insert_resumes_exactly": "columnar",
    },
    "test_contract.py": {
        "test_a_key_given_without_a_value_is_a_missing_key": "declared_columns",
        "test_isolate_rejects_exactly_the_bad_rows": "declared_columns",
        "test_duplicates_in_different_chunks_meet_the_database": "exact_counts",
        "test_isolate_with_rejects_list": "declared_columns",
        "test_max_rejects_stops_cleanly": "declared_columns",
        "test_atomic_all_or_nothing": "transactions",
        "test_atomic_with_isolate_commits_good_rows_together": "transactions",
        "test_upsert_reports_inserted_updated_unchanged_and_does_not_rewrite": "exact_counts",
        "test_upsert_update_columns_inserts_whole_rows_updates_only_those": "exact_counts",
        "test_upsert_of_a_column_subset_must_still_satisfy_not_null": "declared_columns",
        "test_upsert_composite_key": "exact_counts",
        "test_update_by_another_unique_key": "unique_constraints",
        "test_delete_scalars_tuples_and_mappings": "exact_counts",
        "test_missing_table_and_column_are_schema_errors_before_writing": "declared_columns",
        "test_a_row_with_an_unexpected_column_is_rejected_not_truncated": "declared_columns",
        "test_identifiers_are_quoted": "declared_columns",
        "test_value_types_round_trip": "declared_columns",
        "test_text_values_are_coerced_to_column_types": "declared_columns",
        "test_conversion_error_in_raise_mode_names_the_column": "declared_columns",
        "test_integer_out_of_range_is_a_row_error": "declared_columns",
        "test_parallel_writes_call_after_call": "parallel_writes",
    },
    "test_primitives.py": {
        "test_adjust_atomic_is_all_or_nothing": "transactions",
        "test_work_after_a_refused_atomic_adjust_in_the_same_block": "transactions",
        "test_adjust_of_a_big_chunk_applies_every_other_key_once": "declared_columns",
        "test_adjust_costs_statements_per_chunk_not_per_key": "declared_columns",
        "test_adjust_sends_the_readme_s_statements_per_chunk": "declared_columns",
        "test_bank_transfers_conserve_the_total": "transactions",
        "test_get_or_create": "unique_constraints",
        "test_get_or_create_100_concurrent_callers_make_one_row": "unique_constraints",
        "test_ensure_creates_missing_in_few_statements": "unique_constraints",
        "test_ensure_across_chunk_boundaries_creates_only_the_missing": "unique_constraints",
        "test_ensure_concurrent_callers_make_one_row_per_key": "unique_constraints",
        "test_ensure_stopped_by_a_bad_row_leaves_nothing_where_one_writer": "unique_constraints",
        "test_ensure_inside_atomic_rolls_back_with_the_block": "transactions",
        "test_claim_batches_commit_or_release": "row_locks",
        "test_concurrent_claimers_never_share_a_row": "row_locks",
        "test_claim_worker_killed_mid_batch_releases_its_rows": "row_locks",
        "test_atomic_forms_commit_roll_back_and_do_not_retry_other_errors": "transactions",
        "test_atomic_block_is_rerun_on_a_transient_error": "transactions",
        "test_escrow_release_with_two_concurrent_releasers": "transactions",
    },
    "test_resume.py": {
        "test_interrupted_insert_resumes_exactly": "run_log",
        "test_resume_refuses_another_input_or_other_options": "run_log",
        "test_resume_needs_the_run_log_and_its_own_transactions": "run_log",
        "test_a_fresh_load_of_the_same_input_starts_a_new_load": "run_log",
        "test_loading_an_unfinished_input_again_is_refused_unless_resumed_or_forced": "run_log",
        "test_a_keyed_insert_of_an_unfinished_input_is_not_refused": "run_log",
    },
    "test_roundtrip.py": {
        "test_values_round_trip": "declared_columns",
    },
    "test_runlog.py": {
        "test_events_follow_the_chunks_and_add_up_to_the_report": "declared_columns",
    },
    "test_sync.py": {
        "test_parallel_writes_of_the_difference": "parallel_writes",
    },
    "test_testing.py": {
        "test_store_bulk_calls_cost_few_statements_and_n_plus_one_fails": "declared_columns",
        "test_transaction_control_is_reported_on_request": "transactions",
    },
}
GATES: dict[str, str] = {
    f"{file}::{test}": capability
    for file, tests in _GATES_BY_FILE.items()
    for test, capability in tests.items()
}

# So, per backend, exactly these tests skip for a missing capability.
SKIPPED_ON = {
    "sqlite": {t for t, c in GATES.items() if c == "parallel_writes"},
    "postgresql": set(),
    "dynamodb": {t for t, c in GATES.items() if c != "parallel_writes"},
}


def scanned_gates() -> dict[str, set[str]]:
    """test id -> capabilities its body passes to ``needs()``, read from the sources."""
    found: dict[str, set[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id == "needs"
                    and len(call.args) >= 2
                    and isinstance(call.args[1], ast.Constant)
                ):
                    found.setdefault(f"{path.name}::{node.name}", set()).add(call.args[1].value)
    return found


def test_the_gate_table_matches_the_tests() -> None:
    """A test that starts or stops gating on a capability must be listed in GATES."""
    scanned = scanned_gates()
    assert {t: sorted(c) for t, c in scanned.items()} == {t: [c] for t, c in GATES.items()}


def test_every_capability_the_tests_read_is_pinned() -> None:
    read = set()
    for path in TESTS.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "capabilities"
            ):
                read.add(node.attr)
    read |= set(GATES.values())
    read -= {"name", "max_read_keys"}  # not switches
    for flags in FLAGS.values():
        assert read <= set(flags), read - set(flags)


def test_the_skip_lists_follow_from_the_flags() -> None:
    for backend, flags in FLAGS.items():
        derived = {t for t, c in GATES.items() if not flags[c]}
        assert derived == SKIPPED_ON[backend], backend
    assert len(SKIPPED_ON["sqlite"]) == 2
    assert len(SKIPPED_ON["dynamodb"]) == len(GATES) - 2


def store_for(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Any:
    if backend == "sqlite":
        return bulkops.connect(f"sqlite:///{tmp_path}/caps.db")
    if backend == "postgresql":
        return bulkops.connect(str(request.getfixturevalue("pg_url")))
    return bulkops.connect(request.getfixturevalue("dynamodb_local").url)


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("dynamodb", marks=pytest.mark.dynamodb),
    ],
)
def test_each_backend_has_exactly_the_pinned_flags(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    """Kills: any capability flag flipped on a backend (its tests would skip or run
    where they must not)."""
    with store_for(request, backend, tmp_path) as db:
        capabilities = db.capabilities
    assert capabilities.name == backend
    actual = {flag: getattr(capabilities, flag) for flag in FLAGS[backend]}
    assert actual == FLAGS[backend]
    skipped = {t for t, c in GATES.items() if not getattr(capabilities, c)}
    assert skipped == SKIPPED_ON[backend]
