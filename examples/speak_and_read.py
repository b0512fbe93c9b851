"""Speak and read: an agent on the embedded model that reads the text in an image (tesseract OCR)
and speaks an answer aloud (espeak-ng -> WAV), with the tools in their own hubs (speech, vision).

Everything runs offline on CPU. Needs the system packages of `scripts/install_system_deps.sh`
(`make setup` runs it). Run: .venv/bin/python examples/speak_and_read.py [--remote]
With --remote each hub is a Ray actor (restartable); the agent code is the same.
"""

import argparse
import asyncio
import time

from raygent import Agent
from raygent.llm_pool.llama_cpp import LlamaCppChatModel
from raygent.toolhub import HubSet, deploy_hub
from raygent.toolhub.artifacts import default_store
from raygent.toolhub.builtin import OcrTool, TextToSpeechTool
from raygent.toolhub.builtin.vision import ImageDrawTextTool


async def main(remote: bool) -> None:
    # a picture with a notice on it (drawn with Pillow, like a photo of a sign would arrive)
    sign = await ImageDrawTextTool().call(text="Meeting moved to room 204 at 3 PM", font_size=36)
    image = sign.artifacts[0].uri
    print("image:", image)

    hubs = HubSet([deploy_hub("vision", [OcrTool], remote=remote, num_cpus=0),
                   deploy_hub("speech", [TextToSpeechTool], remote=remote, num_cpus=0)])
    agent = Agent(llm=LlamaCppChatModel(), tools=hubs, max_steps=3, params={"max_tokens": 160})

    for request in (f"Read the text in the image {image}",
                    "Say this out loud in a female voice: The meeting moved to room 204 at 3 PM."):
        start = time.perf_counter()
        result = await agent.run(request)
        print(f"\nuser: {request}")
        for call in result.tool_calls:
            print(f"  tool {call.name}({call.arguments}) -> {call.error or call.result}")
        print(f"agent: {result.answer}  ({time.perf_counter() - start:.1f} s)")
        for art in result.artifacts:
            print(f"  artifact: {art.kind} {art.mime_type} {art.uri} {art.metadata}")
    print("\nartifacts are in", default_store().root)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="agent that reads an image and speaks")
    parser.add_argument("--remote", action="store_true", help="run each tool hub as a Ray actor")
    asyncio.run(main(parser.parse_args().remote))
