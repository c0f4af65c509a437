diversens eval --config out/capprobe/eval.yaml \
  --models base=smollm2-135m-instruct,diverse-ns=docs/results/study/run/train/diverse-ns/adapter,diverse-no-length=docs/results/study/run/train/diverse-no-length/adapter \
  --sampling.max_new_tokens 512 --sampling.max_new_tokens_per_task dat=512,pgt=512,aut=512,cwt=512 \
  --num_samples aut=5,cwt=5,dat=30,pgt=30 \
  -o out/capprobe/run
