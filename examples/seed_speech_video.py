"""The seed's multi-modal demo: write ad copy, read it with a female voice, and make a video.

This offline build has no text-to-speech or text-to-video model, so those tools are reported as
unavailable (with the reason) and the agent does what it can: the copy, streamed with the seed's
`stream_run`. Run: .venv/bin/python examples/seed_speech_video.py
"""

import time

from raygent.compat import AgentExecutor, LLMFactory

# the tools the seed's demo relied on, by the seed's names
tool_cfg = {"modelscope_speech-generation": {"use": True}, "modelscope_video-generation": {"use": True},
            "modelscope_text-translation-zh2en": {"use": True}}
model_cfg = {"qwen-0.5b": {"type": "embedded", "model": "qwen2.5-coder-0.5b-instruct",
                           "generate_cfg": {"max_new_tokens": 96, "temperature": 0.7, "top_p": 0.8, "seed": 1}}}

agent = AgentExecutor(LLMFactory.build_llm("qwen-0.5b", model_cfg), tool_cfg)
print("tools available:", list(agent.available_tool_list) or "none")
print("tools missing:")
for name, reason in agent.unavailable_tools.items():
    print(f"  - {name}: {reason}")

start = time.perf_counter()
print("\nstream: ", end="", flush=True)
for event in agent.stream_run("写一篇关于Vision Pro VR眼镜的20字宣传文案，并用女声读出来，同时生成个视频看看"):
    if "llm_text" in event:
        print(event["llm_text"], end="", flush=True)
    elif "exec_result" in event:
        print("\n  exec_result:", event["exec_result"], flush=True)
    elif event.get("is_final"):
        print(f"\n({time.perf_counter() - start:.1f} s)")
print("not done: reading the copy aloud and the video need the missing tools above:",
      ", ".join(n for n in agent.unavailable_tools if "speech" in n or "video" in n))
