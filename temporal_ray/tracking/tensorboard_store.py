"""TensorBoard as a tracking backend: one directory of event files per tracked run, a child's
under its parent's (<log_dir>/temporal/iter_0/model), so TensorBoard's run filter finds
method, iteration and stage in the path.

Written with torch's SummaryWriter, read back with TensorBoard's own event reader: a resumed
run skips each (tag, step) its directory already holds; a finished run has a `.done` marker.
Parameters and manifests are text summaries; TensorBoard shows no files, so artifacts stay in
the run directory.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

DONE = ".done"


class TensorBoardRun:
    """One TensorBoard run: a directory of event files."""

    def __init__(self, log_dir: str):
        self.log_dir = log_dir
        self.done = os.path.exists(os.path.join(log_dir, DONE))
        self.tags: dict[str, str] = _read_json(os.path.join(log_dir, "tags.json"))
        self._writer: SummaryWriter | None = None
        self._steps: dict[str, set[int]] | None = None

    def child(self, key: str, name: str, tags: dict[str, str]) -> TensorBoardRun:
        child = TensorBoardRun(os.path.join(self.log_dir, key))
        child.log_tags(tags)
        return child

    def discard_child(self, key: str) -> None:
        shutil.rmtree(os.path.join(self.log_dir, key), ignore_errors=True)

    def reopen(self) -> None:
        if self.done:
            os.remove(os.path.join(self.log_dir, DONE))
            self.done = False

    def log_tags(self, tags: dict[str, str]) -> None:
        if any(self.tags.get(k) != v for k, v in tags.items()):
            self.tags.update(tags)
            os.makedirs(self.log_dir, exist_ok=True)
            with open(os.path.join(self.log_dir, "tags.json"), "w") as f:
                json.dump(self.tags, f, indent=2)

    def log_params(self, params: dict[str, str]) -> None:
        """Once per run, as a two-column table (the `params` text)."""
        if params:
            self._text("params", "| name | value |\n|---|---|\n" + "\n".join(
                f"| {k} | {v} |" for k, v in sorted(params.items())))

    def log_points(self, points: list[tuple[str, float, int]]) -> None:
        for name, value, step in points:
            if step not in self._logged_steps(name):
                self.writer.add_scalar(name, value, step)
                self._steps[name].add(step)

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        self._text(name, "```\n" + json.dumps(data, indent=2, default=str) + "\n```")

    def _text(self, name: str, text: str) -> None:
        """A text summary at step 0, once (SummaryWriter files it as <name>/text_summary)."""
        if 0 not in self._logged_steps(f"{name}/text_summary"):
            self.writer.add_text(name, text, 0)
            self._steps[f"{name}/text_summary"].add(0)

    def log_artifact(self, path: str) -> None:
        pass  # TensorBoard shows no files: the report stays in the run directory

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        os.makedirs(self.log_dir, exist_ok=True)
        open(os.path.join(self.log_dir, DONE), "w").close()
        self.done = True

    @property
    def writer(self) -> SummaryWriter:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(self.log_dir)
        return self._writer

    def _logged_steps(self, tag: str) -> set[int]:
        """Steps of `tag` in this directory's event files (read once, then kept up to date)."""
        if self._steps is None:
            self._steps = read_steps(self.log_dir)
        return self._steps.setdefault(tag, set())


def read_steps(log_dir: str) -> dict[str, set[int]]:
    """Each tag's steps in the event files of `log_dir` itself (not its children's)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not os.path.isdir(log_dir):
        return {}
    events = EventAccumulator(log_dir, size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    steps = {tag: {e.step for e in events.Scalars(tag)} for tag in tags["scalars"]}
    steps.update({tag: {e.step for e in events.Tensors(tag)} for tag in tags["tensors"]})
    return steps


def _read_json(path: str) -> dict[str, str]:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
