"""Translation between the OpenAI chat/completions and Anthropic messages APIs, for a substitute model (a budget
downgrade or a provider fallback) that speaks the other API than the client: the request on the way up, the
answer (whole, streamed, or an error) on the way back, so the client's SDK reads it as its own API's answer.
What cannot cross faithfully raises Untranslatable, naming the feature; picometer then does not substitute.
Pure: plain data in, plain data (or SSE bytes) out. The decisions, field by field: picometer.translate.requests.
"""

from picometer.translate.answers import answer
from picometer.translate.errors import error
from picometer.translate.request_to_anthropic import DEFAULT_MAX_TOKENS
from picometer.translate.requests import SHAPES, request
from picometer.translate.streams import Event, StreamTranslator
from picometer.translate.untranslatable import Untranslatable

__all__ = ["DEFAULT_MAX_TOKENS", "SHAPES", "Event", "StreamTranslator", "Untranslatable", "answer", "error", "request"]
