"""Faults that no command line can stage (signals, crashes, full disks, poisoned gradients),
each with the test that stages it. The reliability table lists them under the command-line
cases; ``tests/test_reliability.py`` checks that every test named here exists."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROVEN", "Proven"]


@dataclass(frozen=True)
class Proven:
    """A fault, its outcome and the test (``file.py::function``) that checks both."""

    area: str
    what: str
    outcome: str
    leaves: str
    test: str


_T = "tests/test_training_safety.py"

PROVEN = [
    Proven("training: interruption", "Ctrl-C (SIGINT) or SIGTERM during training",
           "the step finishes, a checkpoint is written, one line `stopped by SIGINT at step N: "
           "wrote .../checkpoint-N; continue with --resume-from-checkpoint latest`, exit 130",
           "a complete `checkpoint-N`, `generator_ema/` of step N, no lock",
           f"{_T}::test_ctrl_c_finishes_the_step_writes_a_checkpoint_and_exits_130"),
    Proven("training: interruption", "a second Ctrl-C while the first is being handled",
           "quits at once: `interrupted`, exit 130",
           "the checkpoints from before; a partial hidden `.checkpoint-N.tmp`, removed at the "
           "next start", f"{_T}::test_a_second_ctrl_c_quits_at_once"),
    Proven("training: non-finite values", "a NaN gradient with a finite loss",
           "the run stops before writing anything of that step, naming the tensor and the "
           "step, and says which checkpoint is the newest", "the newest good checkpoint and "
           "`generator_ema/` untouched", f"{_T}::test_a_nan_gradient_is_never_saved"),
    Proven("training: crash", "the process is killed between the two renames that replace "
           "`generator_ema/` (file systems without an atomic exchange)",
           "the next start puts the old folder back and removes the partial new one",
           "the old `generator_ema/` (as `.generator_ema.old-PID` until the next start)",
           f"{_T}::test_a_kill_between_the_two_renames_loses_nothing"),
    Proven("training: crash", "the disk fills up while a checkpoint is written",
           "`no space left on the device while writing .../checkpoint-N (x MiB free); the "
           "partial output was removed; training stopped at step N (...)`, exit 2",
           "no partial checkpoint", f"{_T}::test_a_full_disk_is_reported_and_leaves_no_partial_"
           "checkpoint"),
    Proven("training: crash", "the newest checkpoint is truncated, or an empty "
           "`checkpoint-99/` exists", "`--resume-from-checkpoint latest` skips each with a "
           "warning naming it and resumes the newest complete one", "the skipped folders as "
           "they were", f"{_T}::test_latest_skips_incomplete_and_unreadable_checkpoints"),
    Proven("training: crash", "leftovers of a killed run (`.checkpoint-N.tmp`, "
           "`.generator_ema.tmp-*`, `.generator_ema.old-*`, temporary JSON files)",
           "removed when the next run of that folder starts", "nothing hidden",
           f"{_T}::test_leftovers_of_a_killed_run_are_removed_at_start"),
    Proven("loading", "a checkpoint of the old Accelerate layout whose pickles would run code",
           "never opened: `latest` skips it with a warning, an explicit path is refused",
           "the file as it was; the marker its pickle would create does not exist",
           f"{_T}::test_an_old_pickle_checkpoint_is_never_loaded"),
    Proven("run folder", "a lock file left by a process that died", "taken over with a "
           "warning naming the dead holder", "the new run's lock while it runs",
           f"{_T}::test_a_stale_lock_is_taken_over_with_a_message"),
    Proven("resume", "a resume with another learning rate, gamma or length",
           "applied to the restored optimizers, logged, recorded in `trainer_state.json` "
           "(`resumes`) and `train_config.json`", "the run continues",
           f"{_T}::test_resume_applies_and_records_changed_adjustable_settings"),
]
