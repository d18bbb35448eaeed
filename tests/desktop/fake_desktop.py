"""What a Linux desktop offers a tray app, faked on the real session bus, recording what the app does.

- `Watcher`: org.kde.StatusNotifierWatcher, where libayatana-appindicator registers the tray item.
- `Notifications`: org.freedesktop.Notifications, which records every notification and can "click" one.
- `Tray`: the registered item seen from the outside: its IconName and its com.canonical.dbusmenu menu.

Speaks the real protocols with dbus-next (Debian's python3-dbus-next), as a desktop shell would.
"""

import asyncio
import re

from dbus_next import BusType, Message, MessageType, Variant
from dbus_next.aio import MessageBus
from dbus_next.service import ServiceInterface, method, signal

WATCHER = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"
ITEM = "org.kde.StatusNotifierItem"
MENU = "com.canonical.dbusmenu"
PROPERTIES = "org.freedesktop.DBus.Properties"


class Watcher:
    """A StatusNotifierWatcher. Registration carries the item's bus name only as the call's sender, which
    dbus-next's service classes do not expose, so this one answers method calls from a message handler."""

    def __init__(self, bus):
        self.bus = bus
        self.items = []  # (bus name, object path)
        self.registered = asyncio.Event()

    async def start(self):
        self.bus.add_message_handler(self._handle)
        await self.bus.request_name(WATCHER)
        return self

    def _props(self):
        return {
            "RegisteredStatusNotifierItems": Variant("as", [f"{n}{p}" for n, p in self.items]),
            "IsStatusNotifierHostRegistered": Variant("b", True),
            "ProtocolVersion": Variant("i", 0),
        }

    def _handle(self, msg):
        if msg.message_type != MessageType.METHOD_CALL or msg.path != WATCHER_PATH:
            return None
        if msg.interface == WATCHER and msg.member == "RegisterStatusNotifierItem":
            service = msg.body[0]
            path = service if service.startswith("/") else "/StatusNotifierItem"
            name = msg.sender if service.startswith("/") else service
            self.items.append((name, path))
            self.registered.set()
            self.bus.send(
                Message.new_signal(WATCHER_PATH, WATCHER, "StatusNotifierItemRegistered", "s", [f"{name}{path}"])
            )
            return Message.new_method_return(msg)
        if msg.interface == WATCHER and msg.member == "RegisterStatusNotifierHost":
            return Message.new_method_return(msg)
        if msg.interface == PROPERTIES and msg.member == "Get" and msg.body[0] == WATCHER:
            value = self._props().get(msg.body[1])
            if value is None:
                return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownProperty", msg.body[1])
            return Message.new_method_return(msg, "v", [value])
        if msg.interface == PROPERTIES and msg.member == "GetAll" and msg.body[0] == WATCHER:
            return Message.new_method_return(msg, "a{sv}", [self._props()])
        if msg.interface == "org.freedesktop.DBus.Introspectable":
            return Message.new_method_return(msg, "s", [INTROSPECTION])
        return None


INTROSPECTION = """<node><interface name="org.kde.StatusNotifierWatcher">
<method name="RegisterStatusNotifierItem"><arg type="s" direction="in"/></method>
<method name="RegisterStatusNotifierHost"><arg type="s" direction="in"/></method>
<property name="RegisteredStatusNotifierItems" type="as" access="read"/>
<property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
<property name="ProtocolVersion" type="i" access="read"/>
<signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
<signal name="StatusNotifierItemUnregistered"><arg type="s"/></signal>
<signal name="StatusNotifierHostRegistered"/>
</interface></node>"""


class Notifications(ServiceInterface):
    """A notification daemon that shows nothing and remembers everything."""

    def __init__(self):
        super().__init__("org.freedesktop.Notifications")
        self.shown = []  # dicts: id, app, title, body, actions, hints
        self.changed = asyncio.Event()
        self._next = 1

    @method()
    def Notify(self, app_name: "s", replaces_id: "u", app_icon: "s", summary: "s", body: "s",
               actions: "as", hints: "a{sv}", expire_timeout: "i") -> "u":  # noqa: F821
        nid = replaces_id or self._next
        self._next += 1
        self.shown.append({"id": nid, "app": app_name, "title": summary, "body": body, "actions": actions,
                           "hints": {k: v.value for k, v in hints.items()}})
        self.changed.set()
        return nid

    @method()
    def GetCapabilities(self) -> "as":  # noqa: F821
        return ["actions", "body"]

    @method()
    def GetServerInformation(self) -> "ssss":  # noqa: F821
        return ["fake-notifications", "memtray tests", "1.0", "1.2"]

    @method()
    def CloseNotification(self, nid: "u"):  # noqa: F821
        self.NotificationClosed(nid, 3)

    @signal()
    def ActionInvoked(self, nid, action) -> "us":  # noqa: F821
        return [nid, action]

    @signal()
    def NotificationClosed(self, nid, reason) -> "uu":  # noqa: F821
        return [nid, reason]

    def click(self, nid):
        """What a user clicking the notification's body does."""
        self.ActionInvoked(nid, "default")

    async def start(self, bus):
        bus.export("/org/freedesktop/Notifications", self)
        await bus.request_name("org.freedesktop.Notifications")
        return self


class Tray:
    """The registered tray item, read the way a panel reads it."""

    def __init__(self, bus, name, path):
        self.bus, self.name, self.path = bus, name, path

    async def _call(self, path, interface, member, signature="", body=()):
        reply = await self.bus.call(Message(destination=self.name, path=path, interface=interface,
                                            member=member, signature=signature, body=list(body)))
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"{member}: {reply.error_name} {reply.body}")
        return reply.body

    async def prop(self, name):
        (value,) = await self._call(self.path, PROPERTIES, "Get", "ss", [ITEM, name])
        return value.value

    async def icon(self):
        return await self.prop("IconName")

    async def menu(self):
        """The menu as a list of dicts: id, label, enabled, checked (None when not a check item), type."""
        path = await self.prop("Menu")
        _revision, (_id, _props, children) = await self._call(path, MENU, "GetLayout", "iias", [0, -1, []])
        items = []
        for child in children:
            cid, props, _sub = child.value
            get = lambda k, d=None: props[k].value if k in props else d  # noqa: E731
            items.append({
                "id": cid,
                # As the dbusmenu spec says labels read: "__" is an underscore, a lone "_" marks the access key.
                "label": re.sub(r"_(_?)", lambda m: m.group(1), get("label", "")),
                "enabled": get("enabled", True),
                "visible": get("visible", True),
                "type": get("type", "standard"),
                "checked": (get("toggle-state", 0) == 1) if get("toggle-type") else None,
            })
        return [i for i in items if i["visible"]]

    async def item(self, label_prefix):
        for item in await self.menu():
            if item["label"].startswith(label_prefix):
                return item
        raise AssertionError(f"no menu item starting {label_prefix!r} in {await self.menu()}")

    async def click(self, label_prefix):
        """What a panel sends when the user picks a menu item."""
        item = await self.item(label_prefix)
        path = await self.prop("Menu")
        await self._call(path, MENU, "Event", "isvu", [item["id"], "clicked", Variant("s", ""), 0])


async def connect():
    return await MessageBus(bus_type=BusType.SESSION).connect()
