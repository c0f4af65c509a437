# The GPU image cluster.yaml runs: Ray's image of the pinned Ray (CUDA, Python 3.11) with every
# GPU dependency of diversens baked in, so a new node pulls one image and installs nothing heavy.
# Pins are pyproject.toml's (dependencies + the gpu extra; tests/cluster/test_image.py checks
# that they agree). torch is not named: vLLM brings its own CUDA build (torch 2.14, CUDA 13:
# NVIDIA driver r580 or newer on the host, which the AMI in cluster.yaml provides).
#
#   docker build -t diversens-gpu:0.1.0 .
#   aws ecr create-repository --repository-name diversens-gpu          # once
#   docker tag diversens-gpu:0.1.0 ACCOUNT.dkr.ecr.us-west-2.amazonaws.com/diversens-gpu:0.1.0
#   aws ecr get-login-password | docker login --username AWS --password-stdin \
#       ACCOUNT.dkr.ecr.us-west-2.amazonaws.com
#   docker push ACCOUNT.dkr.ecr.us-west-2.amazonaws.com/diversens-gpu:0.1.0
# then put that name in cluster.yaml (docker.image).
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

# The package itself (code and bundled data, no dependencies: all installed above). A job
# submitted with --working-dir runs the shipped checkout instead, which takes precedence.
COPY --chown=ray:users pyproject.toml README.md /home/ray/diversens/
COPY --chown=ray:users diversens /home/ray/diversens/diversens
RUN pip install --no-cache-dir --no-deps /home/ray/diversens
