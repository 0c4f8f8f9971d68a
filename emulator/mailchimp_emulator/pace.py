"""Pace profiles: how fast the emulator's batch processor goes, named after what they imitate.

Off by default, so the demo and the tests stay fast. ``--pace mailchimp`` on the command line, or
``POST /_emulator/faults {"pace": "mailchimp"}``, sets three knobs of :class:`~.state.Faults`:

* ``batch_ops_per_second``: the processing rate while a batch is ``started``;
* ``batch_queue_seconds``: how long a new batch stays ``pending`` before it may start (a batch
  submitted while another runs waits for that one too: Mailchimp runs one batch at a time);
* ``batch_finalizing_seconds``: once every operation ran (``finished_operations`` equals
  ``total_operations``), how long the batch stays ``finalizing`` before ``finished``.

The ``mailchimp`` profile, from what Mailchimp's users report (collected in the project's shared
API notes, section 12 G):

* **16 operations/s.** drewm/mailchimp-api#178: one batch of 56,785 member PUTs updated the list
  "gradually ... every minute ... over the course of the next hour" (about 950 a minute). It is the
  only quantified report; Mailchimp's guide gives no figure.
* **30 s queue delay.** mailchimp/mailchimp-client-lib-codegen#287: a campaign sent right after a
  subscribe batch reached 0 recipients because the batch had not started yet; thorning/
  node-mailchimp#25: batches are slow "because they are queued on mailchimps servers". No report
  gives a figure, so the middle of the notes' 0-60 s range is taken (inferred).
* **20 s finalizing tail.** beabee-communityrm/monorepo#712: ``finished_operations`` reaches the
  total "within seconds", but ``status`` stays short of ``finished`` while Mailchimp finalises the
  results archive; a job that "normally finishes in about 40 seconds" once took 71 minutes, the
  worst case 7.4 hours. 20 s is the typical case (the notes suggest 5-30 s); the hours-long tail is
  ``stuck_finalizing`` or a larger ``batch_finalizing_seconds``.

``pace_speedup`` runs a profile on a faster clock (rate times N, delays divided by N), so a test
can watch the whole lifecycle in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import Faults


@dataclass(frozen=True)
class PaceProfile:
    """The three batch-pace knobs of one profile, at real speed."""

    ops_per_second: float
    queue_seconds: float
    finalizing_seconds: float


PROFILES: dict[str, PaceProfile] = {
    "mailchimp": PaceProfile(ops_per_second=16.0, queue_seconds=30.0, finalizing_seconds=20.0),
}
OFF = ("", "off", "none")
"""Names that switch a profile off (every pace knob back to zero: as fast as possible)."""


def apply_pace(faults: "Faults", name: str, speedup: float = 1.0) -> None:
    """Set ``faults``' batch-pace knobs from profile ``name`` (or zero them for ``off``).

    Raises ``ValueError`` naming the known profiles for an unknown name or a speedup <= 0.
    """
    key = (name or "").strip().lower()
    if speedup <= 0:
        raise ValueError(f"pace_speedup must be above 0, got {speedup}.")
    if key in OFF:
        faults.pace, faults.pace_speedup = "", 1.0
        faults.batch_ops_per_second = faults.batch_queue_seconds = faults.batch_finalizing_seconds = 0.0
        return
    profile = PROFILES.get(key)
    if profile is None:
        raise ValueError(f"Unknown pace profile {name!r}; known: {', '.join(PROFILES)}, or 'off'.")
    faults.pace, faults.pace_speedup = key, float(speedup)
    faults.batch_ops_per_second = profile.ops_per_second * speedup
    faults.batch_queue_seconds = profile.queue_seconds / speedup
    faults.batch_finalizing_seconds = profile.finalizing_seconds / speedup
