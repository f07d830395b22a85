# %% [markdown]
# # Feature importance
#
# Which inputs does a trained model rely on? Perturb one feature at a time and measure how much the score drops: shuffle its values across the rows (**permutation**, as scikit-learn does) or bump them with uniform noise scaled to the feature's range (**noise**). The bigger the drop, the more the model needs that feature.
#
# `nbvis.FeatureImportance` computes this in the background (the kernel stays free; watch the progress bar, cancel at any time) and draws a sorted bar chart with error bars over the repeats. Click a bar to select the feature in Python.
# %% [markdown]
# ## A regression: diabetes progression, on patients the model has not seen
#
# A small MLP on scikit-learn's diabetes data (442 patients, 10 measurements). Importance
# explains a *model*: measured on the rows it was trained on, it also credits whatever the model
# memorized. So hold out 30% of the patients, train on the rest (with an L2 penalty, so the
# model does not simply overfit), and measure importance on the held-out rows only. Compare the
# two scores: a large gap between them would mean the chart explains memorization.
# %%
import torch
from sklearn.datasets import load_diabetes
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

import nbvis

X, y = load_diabetes(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
mean, std = X_train.mean(), X_train.std()  # scaled with the training rows' statistics only
X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
y_mean, y_std = y_train.mean(), y_train.std()
y_train, y_test = (y_train - y_mean) / y_std, (y_test - y_mean) / y_std

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=0.3)
Xt = torch.tensor(X_train.values, dtype=torch.float32)
yt = torch.tensor(y_train.values, dtype=torch.float32)
for _ in range(300):
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(Xt)[:, 0], yt).backward()
    opt.step()
model.eval()


def r2(rows, target):
    with torch.no_grad():
        return r2_score(target, model(torch.tensor(rows.values, dtype=torch.float32))[:, 0].numpy())


print(f"R2 on the training rows: {r2(X_train, y_train):.3f}")
print(f"R2 on the held-out rows: {r2(X_test, y_test):.3f}")
# %%
chart = nbvis.FeatureImportance(model, X_test, y_test, scoring="r2", n_repeats=10)
chart
# %% [markdown]
# Change the metric or the method in the view (or here: `chart.method = "noise"`) and it
# recomputes. `wait()` returns the result, with scikit-learn's names. Beside it, the same
# held-out importance of a linear model (scikit-learn's own `permutation_importance`): the two
# models agree that `bmi`, `s5` and `bp` matter and `age` does not. Where they differ (`s1`,
# `s2`) the linear model leans on large coefficients of opposite sign on two strongly correlated
# blood measurements, which the penalized MLP avoids.
# %%
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LinearRegression

linear = LinearRegression().fit(X_train, y_train)
print(f"linear model: R2 {linear.score(X_train, y_train):.3f} on the training rows, {linear.score(X_test, y_test):.3f} held out")
reference = permutation_importance(linear, X_test, y_test, n_repeats=10, random_state=0)

result = chart.wait()
print("feature   MLP (held out)     linear (held out)")
for i in result.ranking():
    print(
        f"{result.feature_names[i]:>7}   {result.importances_mean[i]:6.3f} +/- {result.importances_std[i]:.3f}"
        f"   {reference.importances_mean[i]:6.3f} +/- {reference.importances_std[i]:.3f}"
    )
# %% [markdown]
# The same numbers without a widget, and the noise method of the original recipe (add
# `U(0, 1) - 0.5` times the feature's range, see how much R² drops):
# %%
noise = nbvis.permutation_importance(model, X_test, y_test, method="noise", n_repeats=10)
[noise.feature_names[i] for i in noise.ranking()[:4]]
# %% [markdown]
# ## Pixels: which regions of a digit does the 784-100-10 MLP need?
#
# For images every pixel is a feature, but one pixel of these 28×28 digits (upsampled from 8×8)
# carries almost nothing on its own: its neighbours hold the same information, so shuffling it
# alone barely moves the accuracy and the chart would be noise. Shuffle 7×7 patches instead (16
# regions, each about two of the original pixels wide): a patch the network needs costs it
# several points of accuracy, far more than the spread over repeats. The importance map is drawn
# over a sample image (change `sample` to see another); hover it for a patch's importance, click
# it to select that patch.
# %%
images, labels = nbvis.demo.digits()  # 1797 digits, 28x28
mlp = nbvis.demo.digits_mlp()
patches = nbvis.FeatureImportance(mlp, images, labels, scoring="accuracy", n_repeats=5, feature_groups=7, top_k=16, sample=3)
patches
# %%
result = patches.wait()
importance_map = result.importance_map()  # shaped like one image: (1, 28, 28), each pixel its patch's value
print(importance_map.shape)
for i in result.ranking()[:5]:
    print(f"{result.feature_names[i]}: accuracy drops by {result.importances_mean[i]:.3f} +/- {result.importances_std[i]:.3f}")
# %% [markdown]
# Finer 4×4 patches (49 regions) show the same picture at a higher resolution, with smaller
# drops: the finer the pieces, the more of each one its neighbours can stand in for.
# %%
finer = nbvis.FeatureImportance(mlp, images, labels, scoring="accuracy", n_repeats=5, feature_groups=4, top_k=12)
finer
