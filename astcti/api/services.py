"""What request handlers may use, as typed fields (built by the daemon, app.py).

Handlers import this module and `astcti.api.session`, never the dispatcher: the dispatcher
calls them, not the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from astcti.api.auth import Auth
    from astcti.cti.acd import AcdService
    from astcti.cti.control import CallControl
    from astcti.cti.directory import Directory
    from astcti.cti.hub import Hub
    from astcti.cti.presence import PresenceService
    from astcti.cti.queuestats import QueueStatsService
    from astcti.cti.seating import Seating
    from astcti.cti.tracker import Tracker
    from astcti.cti.userdata import UserDataService
    from astcti.store import Store


@dataclass
class Services:
    """The daemon's services a request may reach. Feature services are None when this astcti
    runs without them (tests of one transport); their handlers then answer 503."""

    store: Store
    directory: Directory
    tracker: Tracker
    hub: Hub
    auth: Auth
    control: CallControl | None = None  # third-party call control (cti/control.py)
    acd: AcdService | None = None  # ACD agents on queues (cti/acd.py)
    userdata: UserDataService | None = None  # user data attached to calls (cti/userdata.py)
    presence: PresenceService | None = None  # line states for desktops (cti/presence.py)
    queuestats: QueueStatsService | None = None  # wallboard figures (cti/queuestats.py)
    seating: Seating | None = None  # client address -> extension, the ipextnmap (cti/seating.py)
