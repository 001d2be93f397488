"""Local, faithful simulators of the ShopWired Orders API and the WiredPlus order API.

The real APIs are unreachable from tests, so these simulators follow the source documents
closely and are strict where the documents are; every place where behaviour had to be chosen
is listed in the docstring of the module concerned:

* :mod:`sync.sandbox.shopwired` -- :class:`ShopWiredSimulator`
* :mod:`sync.sandbox.wiredplus` -- :class:`WiredPlusSimulator`
* :mod:`sync.sandbox.faults` -- :class:`Faults`, run-time fault injection for both
* :mod:`sync.sandbox.generator` -- :class:`OrderGenerator`, :class:`Activity`
* :mod:`sync.sandbox.server` -- :func:`serve`, :class:`Sandbox` (real HTTP on loopback)
* :mod:`sync.sandbox.fleet` -- :class:`FleetSandbox`: many stores (shops and WiredPlus
  accounts) on two ports, routed by store name

Every simulator exposes ``handle(httpx.Request) -> httpx.Response`` (thread-safe), usable as
``httpx.MockTransport(sim.handle)``, and takes an injected :class:`~sync.clock.Clock`.
"""

from sync.sandbox.faults import Faults
from sync.sandbox.fleet import FleetSandbox, StoreSpec, describe_fleet, secrets_env, stores_toml
from sync.sandbox.generator import DEFAULT_STATUSES, INVALID_KINDS, Activity, OrderGenerator
from sync.sandbox.server import RunningServer, Sandbox, serve
from sync.sandbox.shopwired import ShopWiredSimulator
from sync.sandbox.wiredplus import WiredPlusSimulator

__all__ = [
    "DEFAULT_STATUSES",
    "INVALID_KINDS",
    "Activity",
    "Faults",
    "FleetSandbox",
    "OrderGenerator",
    "RunningServer",
    "Sandbox",
    "ShopWiredSimulator",
    "StoreSpec",
    "WiredPlusSimulator",
    "describe_fleet",
    "secrets_env",
    "serve",
    "stores_toml",
]
