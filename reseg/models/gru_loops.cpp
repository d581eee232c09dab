// The fused ReNet GRU step loops in C++ (optional; reseg/models/gru_ext.py builds this on first use and
// falls back to the TorchScript loops in renet.py when no compiler is available).
//
// Same buffers, layout and arithmetic as renet.py's _gru_forward_loop / _gru_backward_loop: rows of G
// (gates, n rows pre-scaled by 2 so that tanh(x) = 2*sigmoid(2x) - 1), out and ghn are addressed as
// time * t_stride + sequence * b_stride (+ direction * width); the forward direction runs t = s and the
// backward one t = T-1-s. What TorchScript does as ~15 ATen passes over memory per step is one pass here.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// exp for float that the compiler can vectorise: Cody-Waite reduction to |r| <= ln2/2, then a degree-7
// Taylor polynomial (relative error ~1e-8 before rounding, below float's 6e-8).
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float k = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct Geom {
  int64_t T, tsg, bsg, tso, bso, B, hs;
  int64_t time(int64_t s, int64_t d) const { return d == 0 ? s : T - 1 - s; }
  int64_t prev(int64_t s, int64_t d) const { return d == 0 ? s - 1 : T - s; }  // time of h_prev (s > 0)
};

// (B, hs) rows of `buf` at time t, direction d: a strided view for the recurrent matrix product.
torch::Tensor rows(const torch::Tensor& buf, const Geom& g, int64_t t, int64_t d, int64_t width,
                   int64_t t_stride, int64_t b_stride) {
  return buf.as_strided({g.B, width}, {b_stride, 1}, buf.storage_offset() + t * t_stride + d * width);
}

// One sequence's row at one step; __restrict__ and no branches so that the loop vectorises.
template <typename T>
inline void forward_row(T* __restrict__ gi, const T* __restrict__ gr, const T* __restrict__ hp,
                        T* __restrict__ ho, int64_t hs) {
#pragma GCC ivdep
  for (int64_t j = 0; j < hs; ++j) {
    const T r = sigmoid(gi[j] + gr[j]);
    const T z = sigmoid(gi[hs + j] + gr[hs + j]);
    const T n = T(2) * sigmoid(gi[2 * hs + j] + r * gr[2 * hs + j]) - T(1);
    gi[j] = r;
    gi[hs + j] = z;
    gi[2 * hs + j] = n;
    ho[j] = n + z * (hp[j] - n);
  }
}

template <typename T>
inline void backward_row(const T* __restrict__ gv, const T* __restrict__ dy, const T* __restrict__ gn,
                         const T* __restrict__ hp, const T* __restrict__ cy, T* __restrict__ dz_out,
                         T* __restrict__ sc, T* __restrict__ dg, int64_t hs) {
#pragma GCC ivdep
  for (int64_t j = 0; j < hs; ++j) {
    const T r = gv[j], z = gv[hs + j], n = gv[2 * hs + j];
    const T dh = dy[j] + cy[j];
    const T dhz_j = dh * z;
    const T dn = dh - dhz_j;
    const T dz = dh * (hp[j] - n) * z * (T(1) - z);
    const T da = T(0.5) * dn * (T(1) - n * n);  // n = 2*sigmoid(a) - 1, a pre-scaled: dn/da = (1 - n^2) / 2
    const T dr = da * gn[j] * r * (T(1) - r);
    dz_out[j] = dhz_j;
    sc[j] = dr;
    sc[hs + j] = dz;
    sc[2 * hs + j] = da * r;
    dg[j] = dr;
    dg[hs + j] = dz;
    dg[2 * hs + j] = da;
  }
}

template <typename T>
void forward_rows(T* G, const T* gh, T* out, T* ghn, const T* zeros, const Geom& g, int64_t s, int64_t begin,
                  int64_t end) {
  const int64_t hs = g.hs;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t d = row / g.B, b = row % g.B, t = g.time(s, d);
    T* gi = G + t * g.tsg + b * g.bsg + d * 3 * hs;
    const T* gr = gh + row * 3 * hs;
    const T* hp = s > 0 ? out + g.prev(s, d) * g.tso + b * g.bso + d * hs : zeros;
    forward_row(gi, gr, hp, out + t * g.tso + b * g.bso + d * hs, hs);
    if (ghn) {
      T* gn = ghn + t * g.tso + b * g.bso + d * hs;
      for (int64_t j = 0; j < hs; ++j) gn[j] = gr[2 * hs + j];
    }
  }
}

template <typename T>
void backward_rows(const T* dY, const T* G, const T* ghn, const T* out, const T* carry, T* dhz, T* scratch,
                   T* dG, T* dgh, T* dgh0, const T* zeros, const Geom& g, int64_t s, int64_t begin, int64_t end) {
  const int64_t hs = g.hs;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t d = row / g.B, b = row % g.B, t = g.time(s, d);
    const T* gv = G + t * g.tsg + b * g.bsg + d * 3 * hs;
    const T* dy = dY + t * g.tso + b * g.bso + d * hs;
    const T* gn = ghn + t * g.tso + b * g.bso + d * hs;
    const T* hp = s > 0 ? out + g.prev(s, d) * g.tso + b * g.bso + d * hs : zeros;
    T* sc = scratch + row * 3 * hs;
    T* dh_store = s > 0 ? dgh + g.prev(s, d) * g.tsg + b * g.bsg + d * 3 * hs : dgh0 + row * 3 * hs;
    backward_row(gv, dy, gn, hp, carry + row * hs, dhz + row * hs, sc, dG + t * g.tsg + b * g.bsg + d * 3 * hs, hs);
    std::memcpy(dh_store, sc, sizeof(T) * 3 * hs);
  }
}

int64_t grain(const Geom& g) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(1, g.hs)); }

}  // namespace

// G: (M, 6*hs) input projections, overwritten with the gates r, z, n; out: (M, 2*hs) hidden states;
// ghn: (M, 2*hs) or empty, receives the recurrent n-gate products that backward needs.
void gru_forward(torch::Tensor G, torch::Tensor whhT, torch::Tensor bhh, torch::Tensor out, torch::Tensor ghn,
                 int64_t T, int64_t tsg, int64_t bsg, int64_t tso, int64_t bso, int64_t B, int64_t hs) {
  TORCH_CHECK(G.is_contiguous() && out.is_contiguous() && whhT.is_contiguous(), "gru_forward: contiguous buffers");
  const Geom g{T, tsg, bsg, tso, bso, B, hs};
  auto gh = torch::empty({2, B, 3 * hs}, G.options());
  auto zeros = torch::zeros({hs}, G.options());
  const bool save = ghn.numel() > 0;
  for (int64_t s = 0; s < T; ++s) {
    for (int64_t d = 0; d < 2; ++d) {
      auto ghd = gh[d];
      if (s == 0) {
        ghd.copy_(bhh[d].expand({B, 3 * hs}));
      } else {
        at::addmm_out(ghd, bhh[d], rows(out, g, g.prev(s, d), d, hs, tso, bso), whhT[d]);
      }
    }
    AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "gru_forward", [&] {
      scalar_t* Gp = G.data_ptr<scalar_t>();
      const scalar_t* ghp = gh.data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      scalar_t* gnp = save ? ghn.data_ptr<scalar_t>() : nullptr;
      const scalar_t* zp = zeros.data_ptr<scalar_t>();
      at::parallel_for(0, 2 * B, grain(g), [&](int64_t begin, int64_t end) {
        forward_rows<scalar_t>(Gp, ghp, op, gnp, zp, g, s, begin, end);
      });
    });
  }
}

// Backprop through time; returns d(G), d(whhT) and d(bhh) for the pre-scaled weights.
std::vector<torch::Tensor> gru_backward(torch::Tensor dY, torch::Tensor G, torch::Tensor ghn, torch::Tensor out,
                                        torch::Tensor whhT, int64_t T, int64_t tsg, int64_t bsg, int64_t tso,
                                        int64_t bso, int64_t B, int64_t hs) {
  TORCH_CHECK(dY.is_contiguous() && G.is_contiguous() && ghn.is_contiguous() && out.is_contiguous(),
              "gru_backward: contiguous buffers");
  const Geom g{T, tsg, bsg, tso, bso, B, hs};
  const int64_t g3 = 3 * hs, M = G.size(0);
  auto dG = torch::empty_like(G);
  auto dgh = torch::zeros_like(G);  // d(gh) of each step at the row of its h_prev (for dW_hh)
  auto dgh0 = torch::zeros({2, B, g3}, G.options());
  auto whh = whhT.transpose(1, 2).contiguous();
  auto carry = torch::zeros({2, B, hs}, G.options());
  auto dhz = torch::empty({2, B, hs}, G.options());
  auto scratch = torch::empty({2, B, g3}, G.options());
  auto zeros = torch::zeros({hs}, G.options());
  for (int64_t s = T - 1; s >= 0; --s) {
    AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "gru_backward", [&] {
      const scalar_t* dYp = dY.data_ptr<scalar_t>();
      const scalar_t* Gp = G.data_ptr<scalar_t>();
      const scalar_t* gnp = ghn.data_ptr<scalar_t>();
      const scalar_t* op = out.data_ptr<scalar_t>();
      const scalar_t* cp = carry.data_ptr<scalar_t>();
      scalar_t* dzp = dhz.data_ptr<scalar_t>();
      scalar_t* scp = scratch.data_ptr<scalar_t>();
      scalar_t* dGp = dG.data_ptr<scalar_t>();
      scalar_t* dghp = dgh.data_ptr<scalar_t>();
      scalar_t* dgh0p = dgh0.data_ptr<scalar_t>();
      const scalar_t* zp = zeros.data_ptr<scalar_t>();
      at::parallel_for(0, 2 * B, grain(g), [&](int64_t begin, int64_t end) {
        backward_rows<scalar_t>(dYp, Gp, gnp, op, cp, dzp, scp, dGp, dghp, dgh0p, zp, g, s, begin, end);
      });
    });
    for (int64_t d = 0; d < 2; ++d) {
      auto dzd = dhz[d];
      dzd.addmm_(scratch[d], whh[d]);  // carry for step s-1: dh*z + d(gh) @ W_hh
    }
    std::swap(carry, dhz);
  }
  auto dbhh = dgh.view({M, 2, g3}).sum(0) + dgh0.sum(1);
  auto dwhhT = torch::stack({out.narrow(1, 0, hs).t().mm(dgh.narrow(1, 0, g3)),
                             out.narrow(1, hs, hs).t().mm(dgh.narrow(1, g3, g3))});
  return {dG, dwhhT, dbhh.unsqueeze(1)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &gru_forward, "fused bidirectional GRU sweep, forward");
  m.def("gru_backward", &gru_backward, "fused bidirectional GRU sweep, backward");
}
