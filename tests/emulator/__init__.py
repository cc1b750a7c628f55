"""One local server that speaks the UModelverse, Vtrix and WaveSpeedAI image APIs, for tests and benches.

``from tests.emulator import ProviderEmulator, make_png`` is the way in. The package, a module a job:
``app`` (ProviderEmulator: knobs, lifecycle, call records), ``control`` (the HTTP control API),
``modelverse`` / ``vtrix`` / ``wavespeed`` (one module per provider API, with its error shapes),
``tasks`` (a task's life), ``faults`` (kinds, arming, gateway answers), ``outputs`` (result images and
the file server), ``checks`` (request validation), ``__main__`` (``python -m tests.emulator``).

The three APIs use different paths, so a single base URL (``ProviderEmulator.url``) serves them all:

    POST /v1/images/generations                  UModelverse, synchronous (OpenAI-compatible)
    POST /model/v1/generation                    Vtrix create;  GET /model/v1/generation/task/{id}
    POST /api/v3/wavespeed-ai/<model-path>       WaveSpeed submit;  GET /api/v3/predictions/{id}[/result]
    GET  /files/<id>.png | <id>.jpg              result images; no auth needed, like a provider's CDN
    POST /_emulator/fault | /_emulator/reset | /_emulator/config,  GET /_emulator/requests | generations
                                                 control, for ``python -m tests.emulator`` subprocesses

Requests are checked the way /work/shared/reference/providers.md and the seeds describe (auth header,
model id, which parameters each model takes and their ranges, ``image`` vs ``images``, data URIs that
must decode to a real image). Unknown parameters are refused even where the real service might ignore
them: an adapter that sends a name the provider does not document is a bug we want to see.

Error bodies (adapters should key on HTTP status first, then code); each provider module says more:
    modelverse  {"error": {"message", "type", "param": <request id>, "code"}}; type is
                "invalid_request_error" on 400 and "" otherwise (as in the seed's example).
                400 param_error | model_error (unknown model) | sensitive_check_error, 401 auth_error,
                402 insufficient_balance, 408 timeout, 429 rate_limit_error,
                500 internal_error | model_server_error, 502/503 internal_error, 504 gateway_timeout_error
    vtrix       {"code": str, "message": str}: 400 invalid_parameter, 401 unauthorized,
                403 insufficient_balance, 404 task_not_found, 429 rate_limit_exceeded, 5xx server_error
    wavespeed   {"code": int, "message": str} (no data): HTTP errors carry the HTTP status as code
                (401, 403, 404, 429, 504); validation is HTTP 400 with 1400 (missing) or 1401 (invalid);
                server errors 5000 (500/502), 5003 (503), 5004 (504)

Task life (vtrix, wavespeed): the create/submit answer is never finished (except the faults below and
WaveSpeed's sync mode). The k-th poll finishes it when k >= ``polls_until_done`` (0 counts as 1) and
the provider's latency (``latency``, or ``account(p, latency=)``) has passed since creation. Vtrix
tasks alternate between two status vocabularies (``pending`` then ``processing``, or ``in_progress``)
and its ``created_at`` is unix seconds; WaveSpeed goes ``created`` then ``processing`` (ISO
``created_at``). A failed Vtrix task's ``error`` cycles through ``{"code", "message"}``, a plain
string and ``{"code": <int>, "error_message"}`` (the ``vtrix_error_style`` knob fixes one).

Accounts: ``account(provider, concurrency=N, latency=S, retry_after=S)`` makes that provider's
account run at most N tasks at once, each taking S seconds; a submit beyond answers the provider's
429 busy answer (with Retry-After when set) and makes no task. ``accounts[provider]`` counts
``busy`` answers, ``peak_open`` (most tasks open at once) and ``submits`` accepted; see
``tests.emulator.accounts``. The control API exposes the same (``tests.emulator.control``).

Faults: ``fault(provider, kind, times=1, **options)`` arms a fault for the next ``times`` matching calls
(-1 = forever); provider "*" matches any provider the kind applies to. Gateway faults answer before the
request is even authenticated and hit submit calls unless ``on="poll"`` or ``on="any"``; outcome faults
hit the next *valid* submit; file faults hit downloads of that provider's result files. The first armed
matching fault wins; one fault per call.

Gateway faults (all providers):
    rate_limit          429 with the provider's rate-limit body; retry_after=S adds ``Retry-After: S``
    server_error        status=500|502|503|504 (default 500; 408 too for modelverse); code= overrides
                        modelverse's 500 code (e.g. "model_server_error")
    connection_reset    the connection is aborted without any response
    hang                seconds=S (default 30) of silence, then the normal answer (stop() cuts it
                        short, counted in ``cut_short``)
    malformed_json      200, application/json, a truncated JSON document
    wrong_content_type  200 with an HTML page as text/html
    bad_key             401 even with the right key
    out_of_balance      modelverse 402 insufficient_balance; vtrix 403; wavespeed 403
Outcome faults:
    content_refused     modelverse 400 sensitive_check_error; vtrix task fails with a moderation error
                        (code "content_moderated"); wavespeed task fails, data.code 1200 + moderation text
    task_failed         modelverse 500 model_server_error; vtrix task fails ("generation_failed");
                        wavespeed task fails with data.code 1403 (code=/message= override, e.g. 1402)
                        wavespeed, both kinds, wrapped=True: no task; the submit answers HTTP 400
                        ``{"code": 1200|1403, "message"}``
    never_finish        tasks never leave the running state; modelverse (and wavespeed sync mode) stay
                        silent for seconds=S (default 3600) then answer 504
    completed_on_create vtrix: the create call already answers ``completed`` with output and usage;
                        output=False: ``completed`` with no output (the submission is done, the task
                        runs on and is polled as usual)
    no_task             vtrix: HTTP 200 ``{"error": message}`` with no id (default "Insufficient balance")
    reported_cost       vtrix: the task's ``usage.cost`` is cost= (a string of USD, e.g. "250") instead
                        of the model's price
    end_state           wavespeed: the task ends as status=cancelled|timeout|deleted (message= its
                        data.error) instead of completed
    sync_504            wavespeed, only submits with enable_sync_mode: after the latency the answer is
                        HTTP 504 whose wrapped body still has data.id (status processing); the task
                        completes and the first poll finds it done
    sync_timeout        wavespeed, only sync submits: after the latency, HTTP 200 with the prediction
                        ``processing``, data.code 5004 and "Sync mode timed out ..." (variant="text":
                        without data.code); the task completes and the first poll finds it done
    empty_error         modelverse: a successful answer also carries an ``error`` with empty code/message
    nsfw                wavespeed: has_nsfw_contents is all true
    b64_output          modelverse answers b64_json even if url was asked; prefix=bool picks the
                        ``data:image/png;base64,`` prefix (default: the ``b64_prefix`` knob)
    invalid_base64      modelverse answers b64_json entries that are not base64
File faults:
    expired_output      the result URL answers status= (default 404) with an S3-style XML error
    not_image           200, Content-Type image/png, body an HTML page
    huge_output         size_mb=M (default 60) bytes of image/png (PNG signature then zeros);
                        declare_length=False streams it chunked without Content-Length

Every provider and file call is appended to ``requests`` (headers lower-cased, ``status`` filled in once
answered, None when aborted; set ``record = False`` for long benches). ``peak_in_flight`` holds the most
concurrent calls seen per provider. Every generation is appended to ``generations`` with the seed used (a
random one from a per-instance RNG when the request had none or -1); the result image's colour follows
the seed, so the same seed gives the same bytes.
"""

from tests.emulator.app import ProviderEmulator
from tests.emulator.base import PROVIDERS, Generation, RecordedRequest
from tests.emulator.faults import FAULT_KINDS
from tests.emulator.outputs import B64_PREFIX, data_uri, make_png

__all__ = [
    "B64_PREFIX",
    "FAULT_KINDS",
    "PROVIDERS",
    "Generation",
    "ProviderEmulator",
    "RecordedRequest",
    "data_uri",
    "make_png",
]
