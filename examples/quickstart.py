"""Quickstart (python examples/quickstart.py): a PyTorch model and its Flax twin, same weights, same steps."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import jaxinit.linen as tl
import jaxinit.optim
import torchinit.optim

jax.config.update("jax_default_matmul_precision", "highest")  # full float32 matmuls, as torch on CPU


class FlaxNet(nn.Module):  # jaxinit.linen.Dense: torch.nn.Linear's default init; BatchNorm: torch's semantics
    # (no bias before BatchNorm: its gradient is ~0, and Adam would turn rounding noise into steps)
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = tl.Dense(64, use_bias=False, name="fc1")(x)
        x = jaxinit.BatchNorm(use_running_average=not train, name="bn")(x)
        return tl.Dense(10, name="fc2")(nn.relu(x))


class TorchNet(torch.nn.Module):  # the twin: same layer names, so the weights convert by name
    def __init__(self):
        super().__init__()
        self.fc1, self.bn = torch.nn.Linear(32, 64, bias=False), torch.nn.BatchNorm1d(64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


rng = np.random.default_rng(0)
x, y = rng.normal(size=(128, 32)).astype(np.float32), rng.integers(0, 10, 128)  # one batch, 10 classes
flax_net, torch_net = FlaxNet(), TorchNet()
variables = flax_net.init(jax.random.key(0), jnp.asarray(x), train=False)  # PyTorch's default init, in JAX

# Same seed, same weights: one JAX key re-draws the kernels in both frameworks (BatchNorm left as is).
key = jax.random.key(42)
params = jaxinit.reinit(variables["params"], [(r"^bn", None), (r"kernel$", jaxinit.kaiming_uniform())], key)
torchinit.reinit(torch_net, [(r"^bn", None), (r"weight$", torchinit.kaiming_uniform())], key)
variables = {"params": params, "batch_stats": variables["batch_stats"]}
start = jaxinit.to_torch_state_dict(variables, torch_net)  # Flax layout -> torch layout, strict by name
same = all(torch.equal(start[k], torch_net.state_dict()[k]) for k in start if k.endswith("weight"))
print("same key, same kernels:", same)
torch_net.load_state_dict(start)  # the biases too (they were drawn by each framework): identical start

# torch-exact AdamW on both sides; a few full-batch training steps.
tx, opt = jaxinit.optim.adamw(1e-2), torchinit.optim.adamw(torch_net.parameters(), 1e-2)  # torch's AdamW
opt_state = tx.init(variables["params"])

@jax.jit
def train_step(variables, opt_state, x, y):
    def loss_fn(p):
        logits, upd = flax_net.apply({**variables, "params": p}, x, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd
    (loss, upd), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    updates, opt_state = tx.update(grads, opt_state, variables["params"])
    return {"params": optax.apply_updates(variables["params"], updates), **upd}, opt_state, loss


print(f"{'step':>4}  {'flax loss':>10}  {'torch loss':>10}  {'|difference|':>12}")
loss_diffs = []
for step in range(1, 11):
    variables, opt_state, loss_j = train_step(variables, opt_state, x, y)
    opt.zero_grad()
    loss_t = torch.nn.functional.cross_entropy(torch_net(torch.from_numpy(x)), torch.from_numpy(y))
    loss_t.backward()
    opt.step()
    loss_diffs.append(abs(float(loss_j) - loss_t.item()))
    print(f"{step:>4}  {float(loss_j):>10.6f}  {loss_t.item():>10.6f}  {loss_diffs[-1]:>12.2e}")

# Every weight and BatchNorm running statistic after training, in torch's layout.
trained = jaxinit.to_torch_state_dict(variables, torch_net)
weight_diff = max(float((trained[k] - v).abs().max()) for k, v in torch_net.state_dict().items())
print(f"largest loss difference {max(loss_diffs):.1e}; largest weight/statistic difference {weight_diff:.1e}"
      " (float32 rounding only)")
