"""A training stage's progress record: rank 0's writer and the readers, on real files."""

from temporal_ray.storage.progress import (
    PROGRESS,
    ProgressRecord,
    ProgressWriter,
    read_progress,
    remove_progress,
    write_progress,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now  # steps of 0.25 s below: exact in binary

    def __call__(self) -> float:
        return self.now


def test_the_writer_keeps_one_record_a_second_and_always_the_last_step(tmp_path):
    out = str(tmp_path / "model.tmp-1000-abcd")
    clock = Clock()
    writer = ProgressWriter(out, "dpo", total=10, clock=clock)
    assert read_progress(out) is None  # nothing before the first step
    seen = []
    for step in range(1, 11):
        clock.now += 0.25
        writer.step(step)
        seen.append(read_progress(out).step)
    # A write at most every second: steps 1, 5 and 9 (0.25 s apart), and the last one.
    assert seen == [1, 1, 1, 1, 5, 5, 5, 5, 9, 10]
    record = read_progress(out)
    assert record == ProgressRecord("dpo", 10, 10, 1000.0, 1002.5, 0)
    assert record.seconds_left() == 0
    assert sorted(p.name for p in (tmp_path / "model.tmp-1000-abcd").iterdir()) == [PROGRESS]
    remove_progress(out)
    remove_progress(out)  # gone already: fine
    assert read_progress(out) is None


def test_the_eta_counts_only_this_attempts_steps(tmp_path):
    # A restart resumed after step 20 of 100 and did 10 more steps in 30 s.
    record = ProgressRecord("sft", 30, 100, started=500.0, updated=530.0, from_step=20)
    write_progress(str(tmp_path), record)
    assert read_progress(str(tmp_path)).seconds_left() == 3.0 * 70
    assert ProgressRecord("sft", 20, 100, 500.0, 500.0, 20).seconds_left() is None


def test_a_half_written_or_foreign_file_reads_as_no_record(tmp_path):
    (tmp_path / PROGRESS).write_text('{"kind": "dpo", "step"')
    assert read_progress(str(tmp_path)) is None
    (tmp_path / PROGRESS).write_text('{"something": "else"}')
    assert read_progress(str(tmp_path)) is None
