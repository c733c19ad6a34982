"""Dataset sources: COCO (pycocotools), synthetic smoke data, the built-in shapes dataset."""
