"""Names the dead-code check (vulture, run by `make test`) cannot see used: read by a framework, not by a call.

Each line names what reads it. Add a name here only with that reason; remove code instead when nothing reads it.
"""

# pydantic fields read by model_validate / model_dump, never by attribute access in the code
random_share  # distill.config.SampleConfig: the share of random pairs (the rest of the per-query budget)
fitted_on  # teacher.ensemble: provenance written into teacher.json
not_captioned  # annotate.captions.CaptionReport: a count written into dataset.json's provenance
image_caption, board_titles, engaged_queries  # serve.app.ItemIn: request fields, validated by FastAPI
detail  # serve.app.Problem: the error body FastAPI documents
# registered by name and built by make_feature("zero_shot", ...)
ZeroShot  # student.features
ZeroShotProduct  # student.features (registered by name)
TextMatchGated  # student.features (registered by name: "text_match_gated", the default text feature)
# a typing.Protocol: the interface the caches implement
QueryCache  # serve.cache
# attributes set on library objects that read them (onnxruntime.SessionOptions, ray DataContext, tokenizers, faiss)
intra_op_num_threads, inter_op_num_threads, graph_optimization_level, log_severity_level
enable_progress_bars, print_on_execution_start, preserve_order
pre_tokenizer, post_processor, normalizer, decoder
efConstruction, efSearch, is_trained  # faiss index attributes set by index.build
decoder_start_token_id, min_new_tokens  # transformers GenerationConfig, read by generate()
writeable  # numpy flags
should_exit  # uvicorn.Server, set by the workbench test to stop it
pytestmark  # pytest reads it
