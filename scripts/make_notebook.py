"""Write a notebook from a plain-text outline: cells separated by lines '# %% [markdown]' or '# %%'.

    python scripts/make_notebook.py scripts/notebook_sources/NAME.py example_notebooks/NAME.ipynb
"""

import sys

import nbformat


def cells_from_outline(text: str):
    cells, kind, lines = [], None, []

    def flush():
        if kind is not None:
            source = "\n".join(lines).strip("\n")
            if kind == "markdown":
                source = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in source.splitlines())
                cells.append(nbformat.v4.new_markdown_cell(source))
            else:
                cells.append(nbformat.v4.new_code_cell(source))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    return cells


def main(src: str, dst: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = cells_from_outline(open(src).read())
    nbformat.write(nb, dst)


if __name__ == "__main__":
    main(*sys.argv[1:3])
