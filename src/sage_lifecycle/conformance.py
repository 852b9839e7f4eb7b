"""The conformance suite that ``--lifecycle-conformance`` collects.

The plugin configures :class:`ConformanceMachine` (target, deadline, hold) before it
collects this module; each ``Test*`` class is a Hypothesis state machine.
"""

from __future__ import annotations

from .machines import ConformanceMachine, WhiteBoxMachine

TestLifecycleContract = ConformanceMachine.TestCase
TestDispatcherWhiteBox = WhiteBoxMachine.TestCase
