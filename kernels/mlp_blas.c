/* mlp_blas: the production CPU path, one OpenBLAS SGEMM per layer. */
#include "kernels/mlp.h"

#include <cblas.h>
#include <errno.h>

int mlp_blas_forward(const struct mlp_net *net, const float *x, int batch,
		     float *y, float *scratch)
{
	if (!mlp__net_valid(net, batch))
		return -EINVAL;
	size_t half = (size_t)batch * mlp_max_width(net);
	const float *in = x;
	for (int l = 0; l < net->n_layers; l++) {
		const struct mlp_layer *L = &net->layers[l];
		int last = l == net->n_layers - 1;
		float *out = last ? y : scratch + (l & 1) * half;
		/* out[batch][out] = in[batch][in] . W[out][in]^T. A single row
		 * goes through GEMV: OpenBLAS's SGEMM with M = 1 runs the
		 * blocked kernel and is several times slower there. */
		if (batch == 1)
			cblas_sgemv(CblasRowMajor, CblasNoTrans, L->out, L->in, 1.0f, L->w,
				    L->in, in, 1, 0.0f, out, 1);
		else
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, L->out,
				    L->in, 1.0f, in, L->in, L->w, L->in, 0.0f, out, L->out);
		if (last) {
			for (int r = 0; r < batch; r++)
				cblas_saxpy(L->out, 1.0f, L->b, 1, out + (size_t)r * L->out, 1);
			if (net->output == MLP_OUT_SOFTMAX)
				mlp_softmax_rows(out, batch, L->out);
		} else {
			mlp_bias_relu(out, L->b, batch, L->out);
		}
		in = out;
	}
	return 0;
}
