"""Which errors are a tracking server's outage: decided by the error itself where it says
so, since the server may already answer again by the time anyone asks it."""

import http.server
import threading

import pytest
from mlflow.tracking import MlflowClient

from tfdl.tracking import outage

from .conftest import free_port


@pytest.fixture
def answering_server(monkeypatch):
    """A server on loopback that answers every health check, as the tracking URI."""

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_address[1]}")
    yield
    server.shutdown()


def refused_request(monkeypatch):
    """The error MLflow raises for a request nobody answered (a port nothing listens on)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(Exception) as caught:
        MlflowClient(f"http://127.0.0.1:{free_port()}").get_run("0" * 32)
    return caught.value


def test_a_refused_request_is_an_outage_though_the_server_answers_again(
    answering_server, monkeypatch
):
    err = refused_request(monkeypatch)
    assert outage.is_outage(err)


def test_an_error_the_server_answered_is_no_outage(answering_server):
    assert not outage.is_outage(ValueError("a bad metric value"))


def test_a_sqlite_store_has_no_outages(tmp_path, monkeypatch):
    err = refused_request(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert not outage.is_outage(err)
