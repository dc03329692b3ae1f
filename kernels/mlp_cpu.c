/* mlp_cpu: the plain-loop reference forward pass and the CPU activations. */
#include "kernels/mlp.h"

#include <errno.h>
#include <math.h>
#include <string.h>

int mlp_max_width(const struct mlp_net *net)
{
	int w = 0;
	for (int l = 0; l < net->n_layers; l++)
		if (net->layers[l].out > w)
			w = net->layers[l].out;
	return w;
}

size_t mlp_scratch_floats(const struct mlp_net *net, int batch)
{
	return 2 * (size_t)batch * (size_t)mlp_max_width(net);
}

double mlp_macs(const struct mlp_net *net, int batch)
{
	double macs = 0;
	for (int l = 0; l < net->n_layers; l++)
		macs += (double)net->layers[l].in * net->layers[l].out;
	return macs * batch;
}

void mlp_bias_relu(float *y, const float *b, int rows, int cols)
{
	for (int r = 0; r < rows; r++) {
		float *row = y + (size_t)r * cols;
		for (int c = 0; c < cols; c++) {
			float v = row[c] + b[c];
			row[c] = v > 0.0f ? v : 0.0f;
		}
	}
}

/* Subtracts the row maximum first so exp() never overflows. */
void mlp_softmax_rows(float *y, int rows, int cols)
{
	for (int r = 0; r < rows; r++) {
		float *row = y + (size_t)r * cols;
		float max = row[0];
		for (int c = 1; c < cols; c++)
			if (row[c] > max)
				max = row[c];
		double sum = 0;
		for (int c = 0; c < cols; c++) {
			row[c] = expf(row[c] - max);
			sum += row[c];
		}
		float inv = (float)(1.0 / sum);
		for (int c = 0; c < cols; c++)
			row[c] *= inv;
	}
}

int mlp__net_valid(const struct mlp_net *net, int batch)
{
	if (!net || net->n_layers < 1 || net->n_layers > MLP_MAX_LAYERS || batch < 1)
		return 0;
	for (int l = 0; l < net->n_layers; l++) {
		const struct mlp_layer *L = &net->layers[l];
		if (L->in < 1 || L->out < 1 || !L->w || !L->b)
			return 0;
		if (l > 0 && L->in != net->layers[l - 1].out)
			return 0;
	}
	return 1;
}

int mlp_ref_forward(const struct mlp_net *net, const float *x, int batch,
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
		for (int r = 0; r < batch; r++) {
			const float *xr = in + (size_t)r * L->in;
			for (int o = 0; o < L->out; o++) {
				const float *wr = L->w + (size_t)o * L->in;
				double acc = L->b[o];
				for (int i = 0; i < L->in; i++)
					acc += (double)wr[i] * xr[i];
				float v = (float)acc;
				out[(size_t)r * L->out + o] = (!last && v < 0) ? 0.0f : v;
			}
		}
		if (last && net->output == MLP_OUT_SOFTMAX)
			mlp_softmax_rows(out, batch, L->out);
		in = out;
	}
	return 0;
}
