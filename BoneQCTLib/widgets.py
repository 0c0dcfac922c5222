"""The module widgets' parameter-node lifecycle, shared by QCTBoneDensity, HipCTXA and
FiniteElement (the life cycle of Slicer's scripted-module template, written once).

This is widget-layer code, kept apart from the MRML adapters: it binds a loaded .ui to the
module's parameter node and keeps the binding through module enter/exit and scene close. It
imports only ``slicer`` and ``vtk`` (no numpy or core, so the module files can import it at
load time); ``slicer.util.loadUI`` needs the running application, so it is exercised inside
Slicer only.
"""

import slicer
import vtk


class ParameterNodeWidgetMixin:
    """Mix into ``ScriptedLoadableModuleWidget`` (before it) with ``VTKObservationMixin``.

    The widget calls :meth:`loadModuleUI` in ``setup`` and defines ``_updateState(caller=None,
    event=None)``, which refreshes the GUI from ``self._parameterNode``. The parameter node must
    have an ``inputVolume`` field.
    """

    _parameterNode = None
    _parameterNodeGuiTag = None

    def loadModuleUI(self, uiFileName: str, logic) -> None:
        """Load ``Resources/UI/<uiFileName>``, keep ``logic``, and watch the scene closing."""
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{uiFileName}"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = logic
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens another module: stop updating the GUI."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)

    def onSceneStartClose(self, caller, event) -> None:
        """The parameter node is about to be removed with the scene."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Recreate the parameter node if the module is shown while the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Make sure the parameter node exists, is observed, and has an input volume if possible."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Bind the GUI to ``inputParameterNode`` (the module's parameter node, or None)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
            self._updateState()
