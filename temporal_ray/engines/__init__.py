"""Engines: what turns request rows into generated text, over Ray Data.

protocol.py     what an engine is: request rows in, the same rows with text out
hf.py           transformers' generate in an actor (CPU or GPU)
vllm.py         Ray Data LLM's vLLM processor, and vLLM's settings by device
vllm_engine.py  vLLM through its own API, in one process (kept pools)
http.py         an OpenAI-compatible endpoint served elsewhere
openai_chat.py  the OpenAI chat request and reply, for both sides
pool.py         one pool of engines for a model (or a base and its adapters)
kept_pool.py    pools kept running between stages, one for a whole run (engine.keep_alive)
preflight.py    is a model usable, does a prompt fit its context
"""
