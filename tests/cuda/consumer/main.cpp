// Built by the host compiler against an installed gcpo, linked to gcpo::cuda: validation works
// without a GPU; with one, a small token_stats runs on the device and matches the host twin.
#include <gcpo/cuda.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  std::vector<float> logits(2 * 3 * 5, 0.25f), entropy(6);
  // A host view given to a CUDA operator is refused before anything touches the device.
  const gcpo::status s = gcpo::cuda::token_stats(gcpo::make_view(logits.data(), {2, 3, 5}), {},
                                                 gcpo::make_view(entropy.data(), {2, 3}), {}, {}, {}, nullptr);
  if (s.code() != gcpo::status_code::wrong_memory_space) {
    std::fprintf(stderr, "expected wrong_memory_space, got %s: %s\n", gcpo::to_string(s.code()), s.message());
    return 1;
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("cuda consumer ok (no CUDA device: validation only)\n");
    return 0;
  }
  void *d_logits = nullptr, *d_entropy = nullptr;
  if (cudaMalloc(&d_logits, logits.size() * sizeof(float)) != cudaSuccess ||
      cudaMalloc(&d_entropy, entropy.size() * sizeof(float)) != cudaSuccess)
    return 1;
  cudaMemcpy(d_logits, logits.data(), logits.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  const gcpo::status r = gcpo::cuda::token_stats(
      gcpo::make_device_view(static_cast<const float*>(d_logits), {2, 3, 5}), {},
      gcpo::make_device_view(static_cast<float*>(d_entropy), {2, 3}), {}, {}, {}, stream);
  if (!r.ok()) {
    std::fprintf(stderr, "token_stats failed: %s\n", r.message());
    return 1;
  }
  cudaStreamSynchronize(stream);
  cudaMemcpy(entropy.data(), d_entropy, entropy.size() * sizeof(float), cudaMemcpyDeviceToHost);
  for (float e : entropy)
    if (std::fabs(e - std::log(5.0f)) > 1e-5f) {
      std::fprintf(stderr, "entropy %g, expected log 5\n", e);
      return 1;
    }
  cudaFree(d_logits);
  cudaFree(d_entropy);
  cudaStreamDestroy(stream);
  std::printf("cuda consumer ok (entropy on the device)\n");
  return 0;
}
