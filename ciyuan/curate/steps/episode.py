"""Robot-episode steps that judge or edit one episode at a time: task text, idle trimming, length and
success, stats.

Each declares modality ``episode``: text and media records pass by untouched, counted
``not_applicable``. They read the measured ``meta.episode`` and the frame table (never a provider's
declared numbers). An episode whose frame table cannot be read is skipped by the steps that need it,
counted under ``counters`` by reason and listed under ``extra.skipped``, except by a filter whose
limit needs it, which rejects it with that reason. A step that edits the table or the length marks the
record changed, so the executor recounts its tokens through the episode schedules.
"""

from __future__ import annotations

import re
import unicodedata

from ciyuan.curate import episode as ep
from ciyuan.curate import media
from ciyuan.curate.steps.base import Param, Step, curation_meta, token_count
from ciyuan.errors import InvalidInput
from ciyuan.ingest.readers.episode import feature_stats

EPISODE: frozenset[str] = frozenset({"episode"})


def _skip(step: Step, record: dict, exc: media.NoMedia) -> None:
    step.stats.counters[f"skipped_{exc.reason}"] += 1
    step.stats.extra.setdefault("skipped", {})[record["id"]] = str(exc)


def mark_episode_changed(step: Step, record: dict) -> None:
    """Note that ``step`` changed the episode; tokens removed are measured by the record's schedule."""
    curation_meta(record).setdefault("changed_by", []).append(step.name)
    step.stats.changed += 1
    toks = record.get("tokens") or {}
    if not toks:
        return
    from ciyuan.store.records import token_key
    from ciyuan.tokens import get_schedule, list_schedules

    key = next(iter(toks))  # a shard's column name (the schedule's name with '-' made '_'), or the name
    names = [s["name"] for s in list_schedules() if key in (s["name"], token_key(s["name"]))]
    if not names:
        return
    before = token_count(record, key) or 0
    try:
        (after,) = get_schedule(names[0]).count_records([record])
    except InvalidInput:
        return  # the recount at the end of the stage says what is wrong
    step.stats.tokens_removed += max(0, before - int(after))


class EpisodeTaskText(Step):
    name = "episode_task_text"
    kind = "mapper"
    modalities = EPISODE
    description = (
        "Normalise an episode's task texts (Unicode form, whitespace, optional case and end punctuation) in the "
        "record text, meta.task and meta.episode.tasks; optionally reject episodes without a task."
    )
    params = (
        Param("form", "str", "NFKC", "Unicode normalisation form.", ("NFC", "NFKC", "none")),
        Param("lowercase", "bool", True, "Lower-case the task texts (tasks that differ only in case become one)."),
        Param("strip_punctuation", "bool", True, "Drop punctuation at the end of a task ('Pick the cube.' -> "
              "'pick the cube')."),
        Param("require_task", "bool", False, "Reject episodes that have no task text left."),
    )

    def clean(self, text: str) -> str:
        t = unicodedata.normalize(self.form, text) if self.form != "none" else text
        t = " ".join(t.split())
        if self.lowercase:
            t = t.lower()
        if self.strip_punctuation:
            t = re.sub(r"[\s\.\!\?。！？;；,，:：]+$", "", t)
        return t

    def process(self, record: dict) -> None:
        meta = record.setdefault("meta", {})
        f = meta.get("episode") or {}
        old = list(f.get("tasks") or [])
        if not old and record.get("text"):
            old = str(record["text"]).split("\n")
        new = list(dict.fromkeys(t for t in (self.clean(x) for x in old) if t))  # one task, once
        if new != old:
            if f:
                f["tasks"] = new
            meta["task"] = new[0] if new else None
            record["text"] = "\n".join(new) or None
            curation_meta(record).setdefault("changed_by", []).append(self.name)
            curation_meta(record)["tasks_before"] = old
            self.stats.changed += 1
        if self.require_task and not new:
            self.reject(record, "no_task", "episode_task_text: the episode has no task text")


class EpisodeIdleTrim(Step):
    name = "episode_idle_trim"
    kind = "mapper"
    modalities = EPISODE
    description = (
        "Cut idle segments (action ~ 0, or constant, and state constant for longer than a setting) out of an "
        "episode: the frame table re-indexed (frame_index, index, timestamp), each camera's kept ranges of its "
        "original file recorded in meta.episode.cameras (no re-encoding), stats recomputed, tokens recounted."
    )
    params = (
        Param("min_idle_s", "float", 1.0, "Cut only idle runs at least this many seconds long."),
        Param("action_tol", "float", 1e-3, "An action dimension within this of 0 (or of the previous frame's, "
              "with action_mode: constant) is idle."),
        Param("state_tol", "float", 1e-3, "A state dimension within this of the previous frame's is constant."),
        Param("action_mode", "str", "zero", "What an idle action is: ~0 (velocity or delta actions) or unchanged "
              "from the previous frame (absolute position targets).", ("zero", "constant")),
        Param("where", "str", "anywhere", "Cut idle runs anywhere, or only at the start and the end (then each "
              "camera keeps one contiguous range).", ("anywhere", "ends")),
        Param("min_frames_left", "int", 2, "Leave an episode whole when a trim would leave fewer frames."),
    )

    def setup(self) -> None:
        if self.min_idle_s <= 0:
            raise InvalidInput("episode_idle_trim: min_idle_s must be > 0", hint="e.g. min_idle_s: 1.0")

    def process(self, record: dict) -> None:
        f = ep.facts(record)
        fps = f.get("fps")
        if not fps:
            self.stats.counters["skipped_no_fps"] += 1
            return
        try:
            table = ep.load_table(record)
        except media.NoMedia as exc:
            return _skip(self, record, exc)
        feats = f.get("features") or {}
        state, action = ep.numbers(table, feats, "state"), ep.numbers(table, feats, "action")
        need = max(1, round(self.min_idle_s * float(fps)))
        runs = ep.idle_runs(state, action, self.action_tol, self.state_tol, self.action_mode, need)
        n = table.num_rows
        if self.where == "ends":
            runs = [(a, b) for a, b in runs if a == 0 or b == n]
        if not runs:
            return
        left = n - sum(b - a for a, b in runs)
        if left < max(1, self.min_frames_left):
            self.stats.counters["left_whole_too_idle"] += 1
            curation_meta(record)["idle_not_trimmed"] = f"{n - left} of {n} frames idle"
            return
        ep.trim(record, table, runs)
        self.stats.counters["frames_cut"] += n - left
        self.stats.counters["episodes_trimmed"] += 1
        mark_episode_changed(self, record)


class EpisodeFilter(Step):
    name = "episode_filter"
    kind = "filter"
    modalities = EPISODE
    description = (
        "Reject episodes outside length limits (frames or seconds, measured) or, when asked, without success "
        "(meta.episode.success, a success column, or a reward column); 0 disables a limit."
    )
    params = (
        Param("min_frames", "int", 0, "Reject episodes with fewer frames."),
        Param("max_frames", "int", 0, "Reject episodes with more frames."),
        Param("min_s", "float", 0.0, "Reject episodes shorter than this many seconds (frames / fps)."),
        Param("max_s", "float", 0.0, "Reject episodes longer than this many seconds."),
        Param("success", "str", "any", "Keep every episode, only successful ones, or only failed ones.",
              ("any", "required", "failed")),
        Param("reward_at_least", "float", 1.0, "With a reward column only: success when its largest value is "
              "at least this."),
        Param("unknown_success", "str", "reject", "What a success filter does with an episode that carries no "
              "success signal.", ("reject", "keep")),
    )

    def process(self, record: dict) -> None:
        f = ep.facts(record)
        n, fps = f.get("length"), f.get("fps")
        if (self.min_frames or self.max_frames or self.min_s or self.max_s) and not (
            isinstance(n, int) and fps
        ):
            return self.reject(record, "no_measured_length",
                               "episode_filter: meta.episode has no measured length and fps (re-ingest it)")
        if self.min_frames and n < self.min_frames:
            return self.reject(record, "too_few_frames", f"episode_filter: {n} frames < {self.min_frames}")
        if self.max_frames and n > self.max_frames:
            return self.reject(record, "too_many_frames", f"episode_filter: {n} frames > {self.max_frames}")
        if self.min_s or self.max_s:
            secs = n / float(fps)
            if self.min_s and secs < self.min_s:
                return self.reject(record, "too_short", f"episode_filter: {secs:g} s ({n} frames at {fps:g} fps) "
                                   f"< {self.min_s:g} s")
            if self.max_s and secs > self.max_s:
                return self.reject(record, "too_long", f"episode_filter: {secs:g} s ({n} frames at {fps:g} fps) "
                                   f"> {self.max_s:g} s")
        if self.success == "any":
            return None
        try:
            table = ep.load_table(record)
        except media.NoMedia as exc:
            return self.reject(record, exc.reason, f"episode_filter: success unknown: {exc}")
        ok, source = ep.success_of(record, table, self.reward_at_least)
        if ok is None:
            self.stats.counters["no_success_signal"] += 1
            if self.unknown_success == "reject":
                self.reject(record, "no_success_signal", "episode_filter: no success signal (meta.episode.success, "
                            "a success or a reward column) to judge the episode by")
            return None
        record["meta"].setdefault("episode", {})["success"] = ok
        record["meta"]["episode"]["success_source"] = source
        if self.success == "required" and not ok:
            return self.reject(record, "not_successful", f"episode_filter: not successful by {source}")
        if self.success == "failed" and ok:
            return self.reject(record, "successful", f"episode_filter: successful by {source} (keeping failures)")
        return None


class EpisodeStats(Step):
    name = "episode_stats"
    kind = "mapper"
    modalities = EPISODE
    description = (
        "Recompute meta.episode.stats (min, max, mean, std, count of every numeric non-camera feature) from the "
        "frame table as curated; counts the episodes whose stats were stale."
    )
    params = ()

    def process(self, record: dict) -> None:
        f = ep.facts(record)
        try:
            table = ep.load_table(record)
        except media.NoMedia as exc:
            return _skip(self, record, exc)
        new = feature_stats(table, f.get("features") or {})
        if f.get("stats") != new:
            self.stats.counters["stale_stats_replaced"] += 1
            f["stats"] = new
            f["stats_recomputed_by"] = "curation"
            curation_meta(record).setdefault("changed_by", []).append(self.name)
            self.stats.changed += 1
        return None
