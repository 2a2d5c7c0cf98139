"""template.yaml's state machine, run by moto's Step Functions interpreter against the built
function: moto executes state machines once its `execute_state_machine` setting is on, and
calls Lambda (and S3, for the map's ItemReader and ResultWriter) on the port it believes is
its own (MOTO_PORT). A router listens there: Lambda's Invoke API goes to the function under
the Runtime API emulator, everything else to moto. Needs the virtualenv's moto and PyYAML."""
import json
import pathlib
import queue
import re
import time

import yaml

from emulator import Proxy, free_port
from local_catalog import Moto

ROOT = pathlib.Path(__file__).resolve().parents[1]
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:rows-to-parquet"
INVOKE = re.compile(r"^/2015-03-31/functions/[^/]+/invocations")


class _Tolerant(yaml.SafeLoader):
    """CloudFormation's short tags (`!Sub`, `!Ref`, ...) read as plain values: the state
    machine's definition holds none, only the substitutions' `${...}` placeholders."""


_Tolerant.add_multi_constructor("!", lambda loader, suffix, node: None)


def template_definition(substitutions):
    """The state machine's definition as template.yaml holds it, as JSON, with its
    `DefinitionSubstitutions` placeholders filled in (as strings, as CloudFormation fills
    them)."""
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Tolerant)
    machine = template["Resources"]["ConvertPrefixStateMachine"]["Properties"]
    definition = json.dumps(machine["Definition"])
    wanted = set(machine["DefinitionSubstitutions"])
    missing = wanted - set(substitutions)
    assert not missing, f"substitutions not given: {sorted(missing)}"
    for name, value in substitutions.items():
        definition = definition.replace("${" + name + "}", str(value))
    assert "${" not in definition, "a placeholder left unfilled"
    return definition


class StepFunctions:
    """moto's server executing state machines, with `functions` (started by
    `start_function(moto)`, `count` of them, each one invocation at a time, as Lambda's
    execution environments) behind the router on its port."""

    def __init__(self, start_function, count=2, buckets=(), databases=()):
        router_port = free_port()
        self.moto = Moto(buckets=buckets, databases=databases, env={"MOTO_PORT": str(router_port)})
        self.functions = [start_function(self.moto) for _ in range(count)]
        self.idle = queue.Queue()
        for function in self.functions:
            self.idle.put(function)
        self.invocations = []
        self.router = Proxy(self.moto.port, self._invoke, port=router_port)
        import urllib.request
        request = urllib.request.Request(
            f"{self.moto.endpoint}/moto-api/config", method="POST",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode())
        urllib.request.urlopen(request, timeout=30).read()

    def _invoke(self, request):
        """Lambda's Invoke API, answered by an idle function: an error as Lambda sends it,
        HTTP 200 with X-Amz-Function-Error."""
        if request.method != "POST" or not INVOKE.match(request.path):
            return None
        function = self.idle.get()
        try:
            kind, body, _ = function.invoke(request.body or b"{}")
        finally:
            self.idle.put(function)
        self.invocations.append((json.loads(request.body or b"{}"), kind, body))
        headers = [("Content-Type", "application/json"), ("X-Amz-Executed-Version", "$LATEST")]
        if kind == "error":
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        return 200, headers, json.dumps(body).encode()

    def create(self, definition, name="convert-prefix"):
        client = self.moto.client("stepfunctions")
        return client.create_state_machine(
            name=name, definition=definition,
            roleArn="arn:aws:iam::123456789012:role/convert-prefix")["stateMachineArn"]

    def run(self, machine, execution_input, name, timeout_s=300):
        """Starts an execution and waits for its end: its description (status, output)."""
        client = self.moto.client("stepfunctions")
        arn = client.start_execution(stateMachineArn=machine, name=name,
                                     input=json.dumps(execution_input))["executionArn"]
        end = time.monotonic() + timeout_s
        while True:
            described = client.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return described
            assert time.monotonic() < end, f"execution {name} still running after {timeout_s} s"
            time.sleep(0.2)

    def stop(self):
        self.router.stop()
        for function in self.functions:
            function.stop()
        self.moto.stop()
