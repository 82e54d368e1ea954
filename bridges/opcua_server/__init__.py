"""OPC UA server for the BMS/SCADA: the process image as tags, commands as methods, site events as events.

Integrators write tag lists without browsing, so every node id is derived from a point name by one rule and
never written out per signal. The address space follows the process image: a node is made when its point first
appears (a charger accepted later, an EVSE discovered), and the configured site, chargers, EVSEs and meters are
made at start so the tags of PRODUCT.md §9 exist before their first value.

Node ids (namespace ``urn:evedge:{gatewayId}``, string ids): ``Site`` + the point's path segments, where the
segments in collection position (the 1st, 3rd, ... after a leading ``site``) and the last one (the leaf) are
CamelCased -- split on ``_``, each part capitalised, ``soc`` spelt ``SoC`` -- and the ids between them (charger,
EVSE, meter ids) stay as they are::

    site/limit_w                        Site.LimitW
    chargers/CP01/online                Site.Chargers.CP01.Online
    chargers/CP01/evse/1/power_w        Site.Chargers.CP01.Evse.1.PowerW
    chargers/CP01/evse/1/current_a_l1   Site.Chargers.CP01.Evse.1.CurrentAL1
    meters/grid/power_w                 Site.Meters.grid.PowerW

Collections are folders, ids are objects (chargers are of ``ChargerType``). A numeric point with a unit is an
AnalogItemType with EngineeringUnits (UNECE codes) and EURange (NaN where the range is not known, as Part 8
says); the others are BaseDataVariables of the point's type (Double, Boolean, String, Int64).

Values: SourceTimestamp is the point's own time (the device's), ServerTimestamp when the server took it. Quality
good -> Good, uncertain -> UncertainLastUsableValue, bad -> BadNoCommunication; a point without a value (a lifted
limit, no grid reading in fail-safe) -> BadNoData; a node made ahead of its first value ->
BadWaitingForInitialData. Changes come from a coalescing Feed read at most every ``min_interval_s``: a slow
consumer never slows a producer.

Acting: ``Site.LimitW`` is writable, ``Site.SetLimit`` is a method, and each charger object has RemoteStart,
RemoteStop, Reset, Unlock and SetAvailability: one set of method nodes (``ChargerType.RemoteStart``, ...) that
every charger references, called with the charger (``Site.Chargers.CP01``) as the object. Each builds the typed
command and goes through ``commands.execute`` with the session's user (the door checks the role and audits);
the answer is a JSON string. Site.LimitW keeps showing the process image's limit (the strictest in force), never
what was written. A refused command is a Bad status, with its JSON reason in the output for clients that look::

    forbidden -> BadUserAccessDenied       invalid, unknown_target -> BadInvalidArgument
    offline -> BadNoCommunication          timeout -> BadTimeout           busy -> BadTooManyOperations
    rejected -> BadRequestNotAllowed       call_error, bad_answer -> BadDeviceFailure
    unsupported -> BadNotSupported         disabled -> BadConfigurationError     anything else -> BadInternalError

Site events (sessions, statuses, chargers coming and going, allocation, fail-safe) are ``EvedgeEventType`` events
(Kind, Data as JSON, a readable Message, a Severity) emitted by the Site object and by the Server object.

Security: Basic256Sha256 and Aes256Sha256RsaPss, Sign and SignAndEncrypt; the None policy only with
``allow_none`` (asyncua lets a client open a channel without security even when no such endpoint is offered: the
session is refused at activation), and a password never in clear. Users and roles are the store's console users
(anonymous only with ``allow_anonymous``, as a guest). asyncua asks its user manager synchronously, so the users
are read from the store at every CreateSession and checked at ActivateSession from that copy; a verified password
is remembered (keyed by an HMAC) so that reconnecting costs no scrypt, and at most a few scrypt checks run per
second, so guessing cannot stall the event loop. Client certificates are trusted when their file (DER or PEM) is
in ``{state_dir}/opcua/trusted/`` or was issued by a CA certificate there; the folder is read again at every
CreateSession, so approving a certificate (moving it there from ``{state_dir}/opcua/rejected/``, where unknown
ones are kept) needs no restart. The server certificate is made at first start in ``{state_dir}/opcua/`` (and
made again when it expires or the host name changes) unless the settings name one.

The package, a module a job: ``names`` (node ids, units, data types), ``values`` (a point as a DataValue),
``space`` (the nodes, made and written), ``methods`` (the methods and Site.LimitW writes, through the door),
``events``, ``users``, ``trust`` (client certificates), ``security`` (the server certificate, policies, session
checks), ``sessions`` (asyncua's session with those checks), ``shelf`` (the standard nodes kept on disk for quick
starts) and ``server`` (OpcuaServer: builds and runs it all).
"""

from bridges.opcua_server.server import OpcuaServer

__all__ = ["OpcuaServer"]
