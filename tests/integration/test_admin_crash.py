"""Nothing acknowledged is ever lost: API changes while the gateway is killed with SIGKILL at
random moments. After every restart each change that was answered 2xx is there, and the state
file always parses."""
import json
import os
import random
import signal
import threading
import time

from adminclient import Admin
from conftest import free_ports

API = "/api/v1"
CHANGES = 1000
MIN_KILLS = 20
NAMES = 40


def test_sigkill_loses_no_acknowledged_change(gateway, tmp_path):
    rng = random.Random(int(os.environ.get("PORTGATE_CRASH_SEED", "1")))
    ports = free_ports(NAMES)
    sock = tmp_path / "admin.sock"
    state = tmp_path / "state.json"
    config = (f"[gateway]\nworkers = 1\nadmin-socket = {sock}\nstate = {state}\n"
              f"log-level = warn\n")

    def start():
        # ready=False: a gateway whose state file has no mapping logs no "configuration
        # applied" at warn level; wait for its socket to answer instead.
        g = gateway(config=config, ready=False)
        api = Admin(sock)
        deadline = time.time() + 10
        while True:
            try:
                if api.get(f"{API}/status").status == 200:
                    return g, api
            except OSError:
                pass
            assert g.proc.poll() is None, g.log()
            assert time.time() < deadline, g.log()
            time.sleep(0.01)

    # What the gateway must have: name -> max-conns, for every change answered 2xx. A change
    # cut by a kill may or may not have been made: its name is checked against the gateway
    # after the restart and the model follows what it shows.
    model = {}
    uncertain = set()

    def check(api):
        got = {m["name"]: m["max-conns"] for m in api.get(f"{API}/mappings").json["mappings"]}
        for name in uncertain:
            if name in got:
                model[name] = got[name]
            else:
                model.pop(name, None)
        uncertain.clear()
        assert got == model

    g, api = start()
    kills = cut = 0
    done = 0
    kill_every = CHANGES // (MIN_KILLS + 5)
    while done < CHANGES:
        name = f"m{rng.randrange(NAMES)}"
        i = int(name[1:])
        if name not in model:
            op = ("POST", f"{API}/mappings",
                  {"name": name, "proto": "tcp", "listen": f"127.0.0.1:{ports[i]}",
                   "target": "192.0.2.1:80", "max-conns": rng.randrange(1, 1000)})
        elif rng.random() < 0.3:
            op = ("DELETE", f"{API}/mappings/{name}", None)
        else:
            op = ("PATCH", f"{API}/mappings/{name}", {"max-conns": rng.randrange(1, 1000)})
        killer = None
        if done % kill_every == kill_every - 1:
            # Kill it while this change is on its way: anywhere from before the request is read
            # to after the answer.
            delay = rng.uniform(0, 0.0015)
            killer = threading.Timer(delay, lambda p=g.proc: p.send_signal(signal.SIGKILL))
            killer.start()
        try:
            r = api.request(op[0], op[1], op[2])
            answered = r.status
        except OSError:
            answered = None
        if killer is not None:
            killer.join()
            g.proc.wait(10)
            kills += 1
            # The file is whole after every kill: the old set or the new one.
            json.loads(state.read_text())
            if answered is None:
                uncertain.add(name)
                cut += 1
        if answered is not None:
            assert answered in (200, 201, 204), (op, r)
            if op[0] == "DELETE":
                model.pop(name)
            else:
                model[name] = op[2]["max-conns"]
        done += 1
        if killer is not None:
            g, api = start()
            check(api)
    check(api)
    print(f"{done} changes, {kills} kills, {cut} cut by a kill, {len(model)} mappings at the end")
    assert kills >= MIN_KILLS
    # And a last restart from the file alone.
    g.stop()
    g, api = start()
    check(api)
