"""Names shared with the dialplan and ARI configuration rendered from `asterisk-conf/`.

Change a name here and in the templates together.
"""

#: ari.conf `channelvars` astcti needs in every channel snapshot.
LINKEDID_VAR = "CHANNEL(linkedid)"  # one id for every leg of a call: astcti's callid
USERDATA_VAR = "ASTCTI_USERDATA"  # JSON object set by an IVR, delivered as user data
#: Set by astcti on the far leg of a consultation: that call's id. Asterisk merges linkedids
#: when the agent's one leg is bridged with it, so a restarted astcti reads the id from here.
CALLID_VAR = "ASTCTI_CALLID"

#: Context of the queue membership helper (originated as Local/<action>@astcti-queue).
QUEUE_HELPER_CONTEXT = "astcti-queue"
#: Queue member shim: agents join queues as Local/<ext>@astcti-agent/n so queue calls reach them
#: through astcti's Stasis app (controllable like any other call).
AGENT_SHIM_CONTEXT = "astcti-agent"
QUEUE_USEREVENT = "astcti_queue"
#: NOTIFY Event: talk helper (originated as Local/talk@astcti-notify/n; PJSIPNotify is a
#: dialplan application): the phone answers its ringing call. Replies with a UserEvent.
NOTIFY_HELPER_CONTEXT = "astcti-notify"
NOTIFY_USEREVENT = "astcti_notify"
#: On an agent's channel: the bridges of the calls it holds (comma list), for a restarted astcti.
HOLDING_VAR = "ASTCTI_HOLDING"
