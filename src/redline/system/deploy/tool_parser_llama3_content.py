"""A tool-call parser for Llama 3.1 that keeps what the model wrote before its call.

vLLM's `llama3_json` parser returns no content once it finds a tool call: whatever the model
wrote before the call (its reasoning) is dropped. This one is that parser, registered under
another name, with the text before the call put back as the reply's content.

Usage: vllm serve ... --enable-auto-tool-choice --tool-parser-plugin THIS_FILE
       --tool-call-parser llama3_json_content
"""

from vllm.tool_parsers import ToolParserManager
from vllm.tool_parsers.llama_tool_parser import Llama3JsonToolParser

NAME = "llama3_json_content"


@ToolParserManager.register_module(NAME)
class Llama3JsonWithContent(Llama3JsonToolParser):
    def extract_tool_calls(self, model_output, request):
        info = super().extract_tool_calls(model_output, request)
        if info.tools_called and not info.content:
            before = text_before_call(model_output, getattr(self, "bot_token", "<|python_tag|>"))
            if before:
                info.content = before
        return info


def text_before_call(text, bot_token="<|python_tag|>"):
    """What precedes the first tool call: the bot token, else the first JSON object that
    names a function."""
    at = text.find(bot_token)
    if at < 0:
        starts = [i for i in (text.find('{"name"'), text.find('{"type"'),
                              text.find('{ "name"'), text.find('[{"name"')) if i >= 0]
        at = min(starts) if starts else -1
    return text[:at].strip() if at > 0 else ""
