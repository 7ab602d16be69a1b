// Stride-1 2-D convolutions for XLA:CPU as XLA FFI custom calls (simgan_jax/native/__init__.py).
//
// XLA:CPU's own convolution runs the eye refiner's 64->64 3x3 layer at about 160
// GFLOP/s on a 2-core AVX-512 machine where PyTorch/oneDNN reaches about 400 and the
// cores' FMA peak is about 480; its kernel gradient is slower still. These kernels
// are plain register-blocked loops (GCC vector extensions, compiled on the user's
// machine with -march=native, so AVX-512 or AVX2 as the CPU has): each output tile of
// R pixels x NV vectors of output channels stays in registers while the input
// channels of one tap stream past; one thread per core, rows of the output split
// between them; no im2col copy (each input row is padded once into a small buffer).
//
// Layouts: x [B, H, W, C] (NHWC), w [K, K, C, O] (HWIO), y [B, Ho, Wo, O] with
// Ho = (H + pad_top + pad_bottom - K) / stride + 1 (likewise Wo). Padding: zeros, or
// mirror ("reflect": numpy's mode, the edge not repeated). O must be a multiple of the
// vector length (8 or 16 floats; the Python side only sends multiples of 16); C is
// any count (Winograd needs whole vectors of C and stride 1, else the direct loops run).
//
// Handlers:
//   simgan_conv_forward:     y  = conv(x, w)                        (x, w) -> y
//   simgan_conv_forward_fused: y = [relu](conv(x, w) + bias [+ residual])
//                                                                   (x, w, bias, residual) -> y
//   simgan_conv_kernel_grad: dw = d<y, g>/dw at x                    (x, g) -> dw [K, K, C, O]
// The input gradient is a forward call on g with the flipped, transposed kernel
// (simgan_jax/native/__init__.py).
//
// Threads: the CPUs this process may run on (its affinity mask, capped by a cgroup
// CPU quota), or SIMGAN_JAX_NATIVE_THREADS, from one persistent pool; one call at a
// time uses it (class Pool). Work is
// split into fixed contiguous blocks of output rows and the kernel gradient's
// per-thread partial sums are added in thread order, so results are bitwise
// reproducible for a given thread count.
//
// Errors: no C++ exception leaves a handler or a pool thread (either would be
// std::terminate, a SIGABRT of the whole process). A worker's exception is carried to
// the calling thread, and every handler turns an exception into an FFI error that XLA
// raises in Python (bad_alloc as RESOURCE_EXHAUSTED). SIMGAN_JAX_NATIVE_INJECT_FAULT
// = "bad_alloc" or "worker" throws on purpose (the tests use it to prove this).

#include <immintrin.h>

#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <mutex>
#include <new>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int VL = 16;        // floats per vector register
constexpr int ACC_REGS = 24;  // of 32: accumulators; the rest hold weights and a broadcast
#else
constexpr int VL = 8;
constexpr int ACC_REGS = 12;  // of 16
#endif
constexpr int NV_MAX = 4;     // output channels per tile: NV_MAX * VL
constexpr int RC = 6;         // input channels per kernel-gradient tile (AVX-512)

typedef float vf __attribute__((vector_size(VL * 4)));
typedef float vfu __attribute__((vector_size(VL * 4), aligned(4)));

inline vf load(const float* p) { return *reinterpret_cast<const vfu*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }
#if defined(__AVX512F__)
inline vf broadcast(const float* p) { return (vf)_mm512_set1_ps(*p); }
#else
inline vf broadcast(const float* p) { return (vf)_mm256_broadcast_ss(p); }
#endif

// CPUs in the cgroup's quota (v2 cpu.max "QUOTA PERIOD", v1 cfs files), 0 if none.
int cgroup_cpus() {
  long long quota = -1, period = 0;
  if (FILE* f = std::fopen("/sys/fs/cgroup/cpu.max", "r")) {
    char q[32] = {0};
    if (std::fscanf(f, "%31s %lld", q, &period) == 2 && std::strcmp(q, "max") != 0) quota = std::atoll(q);
    std::fclose(f);
  } else if (FILE* fq = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r")) {
    if (std::fscanf(fq, "%lld", &quota) != 1) quota = -1;
    std::fclose(fq);
    if (FILE* fp = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r")) {
      if (std::fscanf(fp, "%lld", &period) != 1) period = 0;
      std::fclose(fp);
    }
  }
  if (quota <= 0 || period <= 0) return 0;
  return static_cast<int>(std::max<long long>(1, (quota + period - 1) / period));
}

int num_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("SIMGAN_JAX_NATIVE_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) return v;
    }
    int cpus = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
    if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
    if (int quota = cgroup_cpus(); quota > 0) cpus = std::min(cpus, quota);
    return std::max(1, cpus);
  }();
  return n;
}

// Test hook: SIMGAN_JAX_NATIVE_INJECT_FAULT names a fault to raise ("bad_alloc" in the
// calling thread, "worker" in a pool thread).
bool inject(const char* fault) {
  const char* env = std::getenv("SIMGAN_JAX_NATIVE_INJECT_FAULT");
  return env != nullptr && std::strcmp(env, fault) == 0;
}

// A persistent pool of worker threads. One parallel region runs at a time: XLA may
// run independent custom calls (a layer's input and kernel gradients) concurrently,
// and two calls each spreading over every core would thrash them; serialised, each
// call has the cores to itself. The calling thread takes part, as block 0.
class Pool {
 public:
  void run(int threads, const std::function<void(int)>& fn) {
    std::lock_guard<std::mutex> region(region_mu_);
    if (threads <= 1) {
      fn(0);
      return;
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (static_cast<int>(workers_.size()) < threads - 1) {
        workers_.emplace_back([this, i = static_cast<int>(workers_.size()) + 1] { loop(i); });
        workers_.back().detach();
      }
      job_ = &fn;
      active_ = threads;
      pending_ = threads - 1;
      ++generation_;
    }
    wake_.notify_all();
    std::exception_ptr error;
    try {
      fn(0);
    } catch (...) {
      error = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return pending_ == 0; });  // workers hold &fn until then
    job_ = nullptr;
    if (!error) std::swap(error, worker_error_);
    worker_error_ = nullptr;
    if (error) std::rethrow_exception(error);
  }

 private:
  void loop(int index) {
    int64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index >= active_) continue;
        job = job_;
      }
      std::exception_ptr error;
      try {
        (*job)(index);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (error && !worker_error_) worker_error_ = error;
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex region_mu_, mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::exception_ptr worker_error_;
  int active_ = 0, pending_ = 0;
  int64_t generation_ = 0;
};

Pool& pool() {
  // Never destroyed (workers run until the process exits); rebuilt in a forked child,
  // which inherits the pool's memory but none of its threads.
  static Pool* instance = nullptr;
  static pid_t owner = 0;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (instance == nullptr || owner != getpid()) {
    instance = new Pool();
    owner = getpid();
  }
  return *instance;
}

// Runs fn(thread, begin, end) over [0, n) in contiguous blocks, one per thread.
template <typename Fn>
void parallel_blocks(int64_t n, int threads, Fn fn) {
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n)));
  const bool fault = inject("worker");
  pool().run(threads, [&](int t) {
    if (fault && t == threads - 1) throw std::runtime_error("fault injected in a pool thread");
    fn(t, n * t / threads, n * (t + 1) / threads);
  });
}

// Applied to each output value as it is stored: + bias[o], + residual (same layout as
// y), then ReLU; each part optional (null / false).
struct Epilogue {
  const float* bias = nullptr;
  const float* residual = nullptr;
  bool relu = false;

  bool any() const { return bias || residual || relu; }
  // v is y[index .. index + VL), output channel o .. o + VL.
  vf apply(vf v, int64_t index, int64_t o) const {
    if (bias) v += load(bias + o);
    if (residual) v += load(residual + index);
    if (relu) v = v < vf{} ? vf{} : v;  // NaN stays NaN, as in jax.nn.relu
    return v;
  }
};

struct Geometry {
  int64_t B, H, W, C, O, K, S, pt, pb, pl, pr, Ho, Wo;  // S: stride
  bool reflect;
};

// Index of padded coordinate p (in [-pad, size + pad)) in the unpadded axis, or -1 for a zero.
inline int64_t source_index(int64_t p, int64_t size, bool reflect) {
  if (p >= 0 && p < size) return p;
  if (!reflect) return -1;
  if (p < 0) return -p;
  return 2 * (size - 1) - p;
}

// One padded input row [W + pl + pr, C] into buf; src is the unpadded row [W, C].
void pad_row(const float* src, const Geometry& g, float* buf) {
  const int64_t C = g.C;
  std::memcpy(buf + g.pl * C, src, sizeof(float) * g.W * C);
  for (int64_t q = 0; q < g.pl; ++q) {
    int64_t s = source_index(q - g.pl, g.W, g.reflect);
    if (s < 0) std::memset(buf + q * C, 0, sizeof(float) * C);
    else std::memcpy(buf + q * C, src + s * C, sizeof(float) * C);
  }
  for (int64_t q = 0; q < g.pr; ++q) {
    int64_t s = source_index(g.W + q, g.W, g.reflect);
    float* dst = buf + (g.pl + g.W + q) * C;
    if (s < 0) std::memset(dst, 0, sizeof(float) * C);
    else std::memcpy(dst, src + s * C, sizeof(float) * C);
  }
}

// The one micro-kernel: a register tile of R x NV vectors,
//   y[r * O + n*VL ..] (+)= sum_k a[r * ar + k * ak] * b[k * O + n*VL ..]   (r < R, n < NV, k < K),
// a broadcast of `a` times NV vector loads of `b` per k. The forward pass runs it with
// r = output pixels, k = input channels, b = the kernel; the kernel gradient with
// r = input channels, k = pixels, b = the output gradient.
template <int R, int NV, bool ACCUMULATE>
inline void tile(const float* __restrict a, int64_t ar, int64_t ak, const float* __restrict b, int64_t K,
                 int64_t O, float* __restrict y) {
  vf acc[R][NV];
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) acc[r][n] = ACCUMULATE ? load(y + r * O + n * VL) : vf{};
  for (int64_t k = 0; k < K; ++k) {
    vf bv[NV];
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) bv[n] = load(b + k * O + n * VL);
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
      vf av = broadcast(a + r * ar + k * ak);
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n) acc[r][n] += av * bv[n];
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) store(y + r * O + n * VL, acc[r][n]);
}

// y[r, n*VL..] (+)= sum_c x[r*xs + c] * w[c*O + n*VL..] for r < R, n < NV: R pixels
// (rows of x, xs floats apart) times NV vectors of output channels, in registers.
template <int R, int NV, bool ACCUMULATE>
inline void forward_tile(const float* x, int64_t xs, int64_t C, const float* w, int64_t O, float* y) {
  tile<R, NV, ACCUMULATE>(x, xs, 1, w, C, O, y);
}

// forward_tile over `pixels` rows: y[p, o0 : o0 + NV*VL] for p < pixels (register tiles of
// ACC_REGS / NV pixels, the remainder in tiles of 4, 2 and 1).
template <int NV, bool ACCUMULATE>
void forward_pixels(const float* x, int64_t xs, int64_t C, const float* w, int64_t O, float* y,
                    int64_t pixels) {
  constexpr int R = ACC_REGS / NV;
  int64_t p = 0;
  for (; p + R <= pixels; p += R) forward_tile<R, NV, ACCUMULATE>(x + p * xs, xs, C, w, O, y + p * O);
  for (; p + 4 <= pixels; p += 4) forward_tile<4, NV, ACCUMULATE>(x + p * xs, xs, C, w, O, y + p * O);
  for (; p + 2 <= pixels; p += 2) forward_tile<2, NV, ACCUMULATE>(x + p * xs, xs, C, w, O, y + p * O);
  for (; p < pixels; ++p) forward_tile<1, NV, ACCUMULATE>(x + p * xs, xs, C, w, O, y + p * O);
}

// y[p, :] (+)= x[p, :C] @ w[C, O] for p < pixels, over all output channels.
template <bool ACCUMULATE>
void matmul_pixels(const float* x, int64_t xs, int64_t C, const float* w, int64_t O, float* y, int64_t pixels) {
  for (int64_t o0 = 0; o0 < O; o0 += NV_MAX * VL) {
    switch (std::min<int64_t>(NV_MAX, (O - o0) / VL)) {
      case 4: forward_pixels<4, ACCUMULATE>(x, xs, C, w + o0, O, y + o0, pixels); break;
      case 3: forward_pixels<3, ACCUMULATE>(x, xs, C, w + o0, O, y + o0, pixels); break;
      case 2: forward_pixels<2, ACCUMULATE>(x, xs, C, w + o0, O, y + o0, pixels); break;
      default: forward_pixels<1, ACCUMULATE>(x, xs, C, w + o0, O, y + o0, pixels); break;
    }
  }
}

// Direct convolution: per output row, each tap (i, j) is a [Wo, C] x [C, O] product
// accumulated into the row.
void forward_direct(const float* x, const float* w, float* y, const Geometry& g, const Epilogue& ep) {
  const int64_t Wp = g.W + g.pl + g.pr, C = g.C, O = g.O, K = g.K;
  parallel_blocks(g.B * g.Ho, num_threads(), [&](int, int64_t begin, int64_t end) {
    std::vector<float> buf(Wp * C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / g.Ho, h = row % g.Ho;
      float* yr = y + row * g.Wo * O;
      std::memset(yr, 0, sizeof(float) * g.Wo * O);
      for (int64_t i = 0; i < K; ++i) {
        const int64_t s = source_index(g.S * h + i - g.pt, g.H, g.reflect);
        if (s < 0) continue;
        pad_row(x + (b * g.H + s) * g.W * C, g, buf.data());
        for (int64_t j = 0; j < K; ++j)
          matmul_pixels<true>(buf.data() + j * C, g.S * C, C, w + (i * K + j) * C * O, O, yr, g.Wo);
      }
      if (ep.any())
        for (int64_t k = 0; k < g.Wo * O; k += VL) store(yr + k, ep.apply(load(yr + k), row * g.Wo * O + k, k % O));
    }
  });
}

// Winograd for stride-1 3 x 3 layers with whole vectors of input channels, unless
// SIMGAN_JAX_NATIVE_DIRECT is set (for comparisons).
bool winograd(const Geometry& g) {
  static const bool off = std::getenv("SIMGAN_JAX_NATIVE_DIRECT") != nullptr;
  return g.K == 3 && g.S == 1 && g.C % VL == 0 && !off;
}

// Winograd F(2x2, 3x3) (Lavin & Gray, 2016) for 3 x 3 kernels: each 2 x 2 block of
// outputs from a 4 x 4 block of inputs with 16 products per (input, output) channel
// pair instead of 36, i.e. 16 [tiles, C] x [C, O] matmuls on transformed inputs and
// kernels, then an output transform. 2.25x fewer multiplications; the transforms
// only add and subtract (and halve, in the kernel's), so float32 results stay within
// about 1e-6 of the direct sum's relative error.
//   V = B^T d B,  U = G g G^T,  Y = A^T (U . V) A  with
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
void winograd_kernel(const float* w, int64_t C, int64_t O, float* u) {  // u [16, C, O]
  const int64_t plane = C * O;
  for (int64_t k = 0; k < plane; ++k) {
    float g[3][3], t[4][3];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) g[i][j] = w[(i * 3 + j) * plane + k];
    for (int j = 0; j < 3; ++j) {
      t[0][j] = g[0][j];
      t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
      t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
      t[3][j] = g[2][j];
    }
    for (int a = 0; a < 4; ++a) {
      u[(a * 4 + 0) * plane + k] = t[a][0];
      u[(a * 4 + 1) * plane + k] = 0.5f * (t[a][0] + t[a][1] + t[a][2]);
      u[(a * 4 + 2) * plane + k] = 0.5f * (t[a][0] - t[a][1] + t[a][2]);
      u[(a * 4 + 3) * plane + k] = t[a][2];
    }
  }
}

// Tile rows per block: 2 (4 output rows) share the padded input rows between them and
// give the 16 products twice the rows.
constexpr int64_t TILE_ROWS = 2;

// The 2 * nr + 2 padded input rows of tile rows th0 .. th0 + nr - 1 of image b into
// rows [2 * nr + 2, Wp, C] (zeros past the padded image and in the extra column an odd
// width needs).
void winograd_rows(const float* x, const Geometry& g, int64_t b, int64_t th0, int64_t nr, int64_t Wp,
                   float* rows) {
  for (int64_t r = 0; r < 2 * nr + 2; ++r) {
    float* buf = rows + r * Wp * g.C;
    const int64_t p = 2 * th0 + r;  // padded row index
    const int64_t s = p < g.H + g.pt + g.pb ? source_index(p - g.pt, g.H, g.reflect) : -1;
    if (s < 0) {
      std::memset(buf, 0, sizeof(float) * Wp * g.C);
      continue;
    }
    pad_row(x + (b * g.H + s) * g.W * g.C, g, buf);
    const int64_t filled = g.W + g.pl + g.pr;
    if (filled < Wp) std::memset(buf + filled * g.C, 0, sizeof(float) * (Wp - filled) * g.C);
  }
}

// Input transform: v[xi, tr * TW + t, c] = (B^T d B)[xi] for tile t of tile row tr < nr;
// xi planes NT * C floats apart.
void winograd_input(const float* rows, int64_t Wp, int64_t C, int64_t TW, int64_t nr, int64_t NT, float* v) {
  const int64_t step = NT * C;
  for (int64_t tr = 0; tr < nr; ++tr) {
    const float* base = rows + 2 * tr * Wp * C;
    for (int64_t t = 0; t < TW; ++t) {
      for (int64_t c = 0; c < C; c += VL) {
        vf d[4][4], e[4][4];
        for (int r = 0; r < 4; ++r)
          for (int q = 0; q < 4; ++q) d[r][q] = load(base + (r * Wp + 2 * t + q) * C + c);
        for (int q = 0; q < 4; ++q) {
          e[0][q] = d[0][q] - d[2][q];
          e[1][q] = d[1][q] + d[2][q];
          e[2][q] = d[2][q] - d[1][q];
          e[3][q] = d[1][q] - d[3][q];
        }
        for (int a = 0; a < 4; ++a) {
          float* dst = v + (a * 4) * step + (tr * TW + t) * C + c;
          store(dst, e[a][0] - e[a][2]);
          store(dst + step, e[a][1] + e[a][2]);
          store(dst + 2 * step, e[a][2] - e[a][1]);
          store(dst + 3 * step, e[a][1] - e[a][3]);
        }
      }
    }
  }
}

void forward_winograd(const float* x, const float* w, float* y, const Geometry& g, const Epilogue& ep) {
  const int64_t C = g.C, O = g.O;
  const int64_t TH = (g.Ho + 1) / 2, TW = (g.Wo + 1) / 2;  // tiles per column / row
  const int64_t Wp = 2 * TW + 2;                          // padded row, plus a zero column if Wo is odd
  const int64_t NB = (TH + TILE_ROWS - 1) / TILE_ROWS, NT = TILE_ROWS * TW;
  std::vector<float> u(16 * C * O);
  winograd_kernel(w, C, O, u.data());
  parallel_blocks(g.B * NB, num_threads(), [&](int, int64_t begin, int64_t end) {
    std::vector<float> rows((2 * TILE_ROWS + 2) * Wp * C), v(16 * NT * C), m(16 * NT * O);
    for (int64_t block = begin; block < end; ++block) {
      const int64_t b = block / NB, th0 = (block % NB) * TILE_ROWS, nr = std::min(TILE_ROWS, TH - th0);
      winograd_rows(x, g, b, th0, nr, Wp, rows.data());
      winograd_input(rows.data(), Wp, C, TW, nr, NT, v.data());
      // 16 products [nr * TW, C] x [C, O].
      for (int xi = 0; xi < 16; ++xi)
        matmul_pixels<false>(v.data() + xi * NT * C, C, C, u.data() + xi * C * O, O, m.data() + xi * NT * O,
                             nr * TW);
      // Output transform into the (up to) 2 x 2 outputs of each tile.
      for (int64_t tr = 0; tr < nr; ++tr) {
        const int64_t h = 2 * (th0 + tr);
        const bool second_row = h + 1 < g.Ho;
        const int64_t i0 = (b * g.Ho + h) * g.Wo * O, i1 = i0 + g.Wo * O;  // row offsets in y
        float* y0 = y + i0;
        float* y1 = y + i1;
        for (int64_t t = 0; t < TW; ++t) {
          const bool second_col = 2 * t + 1 < g.Wo;
          const int64_t c0 = 2 * t * O, c1 = c0 + O;  // column offsets
          const float* mt = m.data() + (tr * TW + t) * O;
          for (int64_t o = 0; o < O; o += VL) {
            vf n[4][4], f[2][4];
            for (int a = 0; a < 4; ++a)
              for (int q = 0; q < 4; ++q) n[a][q] = load(mt + (a * 4 + q) * NT * O + o);
            for (int q = 0; q < 4; ++q) {
              f[0][q] = n[0][q] + n[1][q] + n[2][q];
              f[1][q] = n[1][q] - n[2][q] - n[3][q];
            }
            store(y0 + c0 + o, ep.apply(f[0][0] + f[0][1] + f[0][2], i0 + c0 + o, o));
            if (second_col) store(y0 + c1 + o, ep.apply(f[0][1] - f[0][2] - f[0][3], i0 + c1 + o, o));
            if (second_row) {
              store(y1 + c0 + o, ep.apply(f[1][0] + f[1][1] + f[1][2], i1 + c0 + o, o));
              if (second_col) store(y1 + c1 + o, ep.apply(f[1][1] - f[1][2] - f[1][3], i1 + c1 + o, o));
            }
          }
        }
      }
    }
  });
}

void forward(const float* x, const float* w, float* y, const Geometry& g, const Epilogue& ep = Epilogue()) {
  if (winograd(g)) forward_winograd(x, w, y, g, ep);
  else forward_direct(x, w, y, g, ep);
}

// dw[c, n*VL..] += sum_p x[p*xs + c] * gy[p*O + n*VL..] for c < RCT, n < NV over n pixels p.
template <int RCT, int NV>
inline void kernel_grad_tile(const float* x, int64_t xs, const float* gy, int64_t O, int64_t n, float* dw) {
  tile<RCT, NV, true>(x, 1, xs, gy, n, O, dw);
}

// dw[c, o0..] += sum_p x[p*xs + c] * gy[p*O + o0..] over n pixels p, for all c < C.
template <int NV>
void kernel_grad_channels(const float* x, int64_t xs, int64_t C, const float* gy, int64_t O, int64_t n, float* dw) {
  // RCT * NV accumulators: at most ACC_REGS.
  constexpr int R = std::min(RC, ACC_REGS / NV);
  int64_t c0 = 0;
  for (; c0 + R <= C; c0 += R) kernel_grad_tile<R, NV>(x + c0, xs, gy, O, n, dw + c0 * O);
  for (; c0 + 2 <= C; c0 += 2) kernel_grad_tile<2, NV>(x + c0, xs, gy, O, n, dw + c0 * O);
  for (; c0 < C; ++c0) kernel_grad_tile<1, NV>(x + c0, xs, gy, O, n, dw + c0 * O);
}

void kernel_grad_direct(const float* x, const float* gy, float* dw, const Geometry& g) {
  const int64_t Wp = g.W + g.pl + g.pr, C = g.C, O = g.O, K = g.K;
  const int64_t size = K * K * C * O;
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), g.B * g.Ho)));
  std::vector<std::vector<float>> partial(threads);
  parallel_blocks(g.B * g.Ho, threads, [&](int t, int64_t begin, int64_t end) {
    std::vector<float>& acc = partial[t];
    acc.assign(size, 0.0f);
    std::vector<float> buf(Wp * C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / g.Ho, h = row % g.Ho;
      const float* gr = gy + row * g.Wo * O;
      for (int64_t i = 0; i < K; ++i) {
        const int64_t s = source_index(g.S * h + i - g.pt, g.H, g.reflect);
        if (s < 0) continue;
        pad_row(x + (b * g.H + s) * g.W * C, g, buf.data());
        for (int64_t j = 0; j < K; ++j) {
          float* dwt = acc.data() + (i * K + j) * C * O;
          for (int64_t o0 = 0; o0 < O; o0 += NV_MAX * VL) {
            const int64_t nv = std::min<int64_t>(NV_MAX, (O - o0) / VL);
            const float* xs = buf.data() + j * C;
            switch (nv) {
              case 4: kernel_grad_channels<4>(xs, g.S * C, C, gr + o0, O, g.Wo, dwt + o0); break;
              case 3: kernel_grad_channels<3>(xs, g.S * C, C, gr + o0, O, g.Wo, dwt + o0); break;
              case 2: kernel_grad_channels<2>(xs, g.S * C, C, gr + o0, O, g.Wo, dwt + o0); break;
              default: kernel_grad_channels<1>(xs, g.S * C, C, gr + o0, O, g.Wo, dwt + o0); break;
            }
          }
        }
      }
    }
  });
  std::memcpy(dw, partial[0].data(), sizeof(float) * size);
  for (int t = 1; t < threads; ++t)
    for (int64_t k = 0; k < size; ++k) dw[k] += partial[t][k];
}

// Winograd F(2x2, 3x3) kernel gradient: with U = G w G^T the forward pass is
// Y_t = A^T (U . V_t) A per tile t, so dL/dU = sum_t (A dY_t A^T) . V_t (16 products
// [C, tiles] x [tiles, O]) and dL/dw = G^T (dL/dU) G.
void kernel_grad_winograd(const float* x, const float* gy, float* dw, const Geometry& g) {
  const int64_t C = g.C, O = g.O, plane = C * O;
  const int64_t TH = (g.Ho + 1) / 2, TW = (g.Wo + 1) / 2, Wp = 2 * TW + 2;
  const int64_t NB = (TH + TILE_ROWS - 1) / TILE_ROWS, NT = TILE_ROWS * TW;
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), g.B * NB)));
  std::vector<std::vector<float>> partial(threads);
  parallel_blocks(g.B * NB, threads, [&](int thread, int64_t begin, int64_t end) {
    std::vector<float>& du = partial[thread];
    du.assign(16 * plane, 0.0f);
    std::vector<float> rows((2 * TILE_ROWS + 2) * Wp * C), v(16 * NT * C), e(16 * NT * O);
    for (int64_t block = begin; block < end; ++block) {
      const int64_t b = block / NB, th0 = (block % NB) * TILE_ROWS, nr = std::min(TILE_ROWS, TH - th0);
      winograd_rows(x, g, b, th0, nr, Wp, rows.data());
      winograd_input(rows.data(), Wp, C, TW, nr, NT, v.data());
      // e[xi, tile, o] = (A dY A^T)[xi], dY the tile's 2 x 2 output gradients (0 outside).
      for (int64_t tr = 0; tr < nr; ++tr) {
        const int64_t h = 2 * (th0 + tr);
        const bool second_row = h + 1 < g.Ho;
        const float* g0 = gy + (b * g.Ho + h) * g.Wo * O;
        const float* g1 = g0 + g.Wo * O;
        for (int64_t t = 0; t < TW; ++t) {
          const bool second_col = 2 * t + 1 < g.Wo;
          for (int64_t o = 0; o < O; o += VL) {
            const vf z{};
            const vf d00 = load(g0 + 2 * t * O + o), d01 = second_col ? load(g0 + (2 * t + 1) * O + o) : z;
            const vf d10 = second_row ? load(g1 + 2 * t * O + o) : z;
            const vf d11 = second_row && second_col ? load(g1 + (2 * t + 1) * O + o) : z;
            // A = [1 0; 1 1; 1 -1; 0 -1]: rows then columns.
            const vf r[4][2] = {{d00, d01}, {d00 + d10, d01 + d11}, {d00 - d10, d01 - d11}, {-d10, -d11}};
            const int64_t step = NT * O;
            for (int a = 0; a < 4; ++a) {
              float* dst = e.data() + (a * 4) * step + (tr * TW + t) * O + o;
              store(dst, r[a][0]);
              store(dst + step, r[a][0] + r[a][1]);
              store(dst + 2 * step, r[a][0] - r[a][1]);
              store(dst + 3 * step, -r[a][1]);
            }
          }
        }
      }
      for (int xi = 0; xi < 16; ++xi) {
        const float* vx = v.data() + xi * NT * C;
        const float* ex = e.data() + xi * NT * O;
        float* dux = du.data() + xi * plane;
        for (int64_t o0 = 0; o0 < O; o0 += NV_MAX * VL) {
          switch (std::min<int64_t>(NV_MAX, (O - o0) / VL)) {
            case 4: kernel_grad_channels<4>(vx, C, C, ex + o0, O, nr * TW, dux + o0); break;
            case 3: kernel_grad_channels<3>(vx, C, C, ex + o0, O, nr * TW, dux + o0); break;
            case 2: kernel_grad_channels<2>(vx, C, C, ex + o0, O, nr * TW, dux + o0); break;
            default: kernel_grad_channels<1>(vx, C, C, ex + o0, O, nr * TW, dux + o0); break;
          }
        }
      }
    }
  });
  for (int t = 1; t < threads; ++t)
    for (int64_t k = 0; k < 16 * plane; ++k) partial[0][k] += partial[t][k];
  const float* du = partial[0].data();
  // dw = G^T du G, G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1].
  const float gt[3][4] = {{1.f, .5f, .5f, 0.f}, {0.f, .5f, -.5f, 0.f}, {0.f, .5f, .5f, 1.f}};
  for (int64_t k = 0; k < plane; ++k) {
    float t[3][4];
    for (int i = 0; i < 3; ++i)
      for (int q = 0; q < 4; ++q)
        t[i][q] = gt[i][0] * du[(0 * 4 + q) * plane + k] + gt[i][1] * du[(1 * 4 + q) * plane + k] +
                  gt[i][2] * du[(2 * 4 + q) * plane + k] + gt[i][3] * du[(3 * 4 + q) * plane + k];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j)
        dw[(i * 3 + j) * plane + k] = t[i][0] * gt[j][0] + t[i][1] * gt[j][1] + t[i][2] * gt[j][2] + t[i][3] * gt[j][3];
  }
}

void kernel_grad(const float* x, const float* gy, float* dw, const Geometry& g) {
  if (winograd(g)) kernel_grad_winograd(x, gy, dw, g);
  else kernel_grad_direct(x, gy, dw, g);
}

ffi::Error make_geometry(ffi::Span<const int64_t> xd, int64_t K, int64_t O, int64_t S, int64_t pt, int64_t pb,
                         int64_t pl, int64_t pr, int64_t reflect, Geometry* g) {
  if (xd.size() != 4) return ffi::Error::InvalidArgument("simgan conv: x must be [B, H, W, C]");
  if (S < 1) return ffi::Error::InvalidArgument("simgan conv: stride must be >= 1");
  const int64_t hp = xd[1] + pt + pb, wp = xd[2] + pl + pr;
  *g = Geometry{xd[0], xd[1], xd[2], xd[3], O, K, S, pt, pb, pl, pr,
                hp >= K ? (hp - K) / S + 1 : 0, wp >= K ? (wp - K) / S + 1 : 0, reflect != 0};
  if (O % VL != 0) return ffi::Error::InvalidArgument("simgan conv: output channels must be a multiple of the vector length");
  if (g->Ho <= 0 || g->Wo <= 0) return ffi::Error::InvalidArgument("simgan conv: empty output");
  if (g->reflect && (pt >= g->H || pb >= g->H || pl >= g->W || pr >= g->W))
    return ffi::Error::InvalidArgument("simgan conv: mirror padding wider than the image");
  return ffi::Error::Success();
}

// Runs a handler's body; an exception becomes an FFI error instead of std::terminate.
template <typename Body>
ffi::Error barrier(const char* handler, Body body) {
  try {
    if (inject("bad_alloc")) throw std::bad_alloc();
    return body();
  } catch (const std::bad_alloc&) {
    return ffi::Error(ffi::ErrorCode::kResourceExhausted,
                      std::string(handler) + ": out of memory (std::bad_alloc)");
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string(handler) + ": " + e.what());
  } catch (...) {
    return ffi::Error::Internal(std::string(handler) + ": unknown C++ exception");
  }
}

ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> y,
                       int64_t stride, int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t reflect) {
  return barrier("simgan conv Forward", [&]() -> ffi::Error {
    auto wd = w.dimensions();
    if (wd.size() != 4 || wd[0] != wd[1]) return ffi::Error::InvalidArgument("simgan conv: w must be [K, K, C, O]");
    Geometry g;
    if (auto e = make_geometry(x.dimensions(), wd[0], wd[3], stride, pt, pb, pl, pr, reflect, &g); e.failure()) return e;
    if (wd[2] != g.C) return ffi::Error::InvalidArgument("simgan conv: w's input channels differ from x's");
    forward(x.typed_data(), w.typed_data(), y->typed_data(), g);
    return ffi::Error::Success();
  });
}

// y = [relu](conv(x, w) + bias [+ residual]); residual is [1] (a placeholder) unless
// has_residual.
ffi::Error ForwardFusedImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> bias,
                            ffi::Buffer<ffi::F32> residual, ffi::ResultBuffer<ffi::F32> y, int64_t stride,
                            int64_t pt, int64_t pb,
                            int64_t pl, int64_t pr, int64_t reflect, int64_t relu, int64_t has_residual) {
  return barrier("simgan conv ForwardFused", [&]() -> ffi::Error {
    auto wd = w.dimensions();
    if (wd.size() != 4 || wd[0] != wd[1]) return ffi::Error::InvalidArgument("simgan conv: w must be [K, K, C, O]");
    Geometry g;
    if (auto e = make_geometry(x.dimensions(), wd[0], wd[3], stride, pt, pb, pl, pr, reflect, &g); e.failure()) return e;
    if (wd[2] != g.C) return ffi::Error::InvalidArgument("simgan conv: w's input channels differ from x's");
    if (bias.element_count() != static_cast<size_t>(g.O)) return ffi::Error::InvalidArgument("simgan conv: bias must be [O]");
    if (has_residual && residual.element_count() != static_cast<size_t>(g.B * g.Ho * g.Wo * g.O))
      return ffi::Error::InvalidArgument("simgan conv: residual must be [B, Ho, Wo, O]");
    Epilogue ep;
    ep.bias = bias.typed_data();
    ep.residual = has_residual ? residual.typed_data() : nullptr;
    ep.relu = relu != 0;
    forward(x.typed_data(), w.typed_data(), y->typed_data(), g, ep);
    return ffi::Error::Success();
  });
}

ffi::Error KernelGradImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> gy, ffi::ResultBuffer<ffi::F32> dw,
                          int64_t stride, int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t reflect) {
  return barrier("simgan conv KernelGrad", [&]() -> ffi::Error {
    auto dd = dw->dimensions();
    if (dd.size() != 4 || dd[0] != dd[1]) return ffi::Error::InvalidArgument("simgan conv: dw must be [K, K, C, O]");
    Geometry g;
    if (auto e = make_geometry(x.dimensions(), dd[0], dd[3], stride, pt, pb, pl, pr, reflect, &g); e.failure()) return e;
    auto gd = gy.dimensions();
    if (gd.size() != 4 || gd[0] != g.B || gd[1] != g.Ho || gd[2] != g.Wo || gd[3] != g.O)
      return ffi::Error::InvalidArgument("simgan conv: g must be [B, Ho, Wo, O]");
    kernel_grad(x.typed_data(), gy.typed_data(), dw->typed_data(), g);
    return ffi::Error::Success();
  });
}

}  // namespace

#define SIMGAN_CONV_BINDING(RESULT)                                                      \
  ffi::Ffi::Bind()                                                                       \
      .Arg<ffi::Buffer<ffi::F32>>()                                                      \
      .Arg<ffi::Buffer<ffi::F32>>()                                                      \
      .Ret<ffi::Buffer<ffi::F32>>()                                                      \
      .Attr<int64_t>("stride")                                                           \
      .Attr<int64_t>("pad_top")                                                          \
      .Attr<int64_t>("pad_bottom")                                                       \
      .Attr<int64_t>("pad_left")                                                         \
      .Attr<int64_t>("pad_right")                                                        \
      .Attr<int64_t>("reflect")

XLA_FFI_DEFINE_HANDLER_SYMBOL(SimganConvForward, ForwardImpl, SIMGAN_CONV_BINDING(y));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SimganConvKernelGrad, KernelGradImpl, SIMGAN_CONV_BINDING(dw));
XLA_FFI_DEFINE_HANDLER_SYMBOL(SimganConvForwardFused, ForwardFusedImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_bottom")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("pad_right")
                                  .Attr<int64_t>("reflect")
                                  .Attr<int64_t>("relu")
                                  .Attr<int64_t>("has_residual"));

extern "C" int simgan_conv_vector_length() { return VL; }
extern "C" int simgan_conv_num_threads() { return num_threads(); }
