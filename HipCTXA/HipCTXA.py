"""Hip CTXA: DXA-equivalent areal BMD (g/cm2) of the proximal femur from calibrated CT, with femoral neck, trochanter, intertrochanter and total hip regions (Cann et al. 2014).

This release provides the module shell: input selection and the shared scene <-> core
adapters. The hip CTXA pipeline (femur extraction, rotation to the DXA position, projection and ROIs) comes in a later release.
"""

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

#
# HipCTXA
#


class HipCTXA(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Hip CTXA"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = ["QCTBoneDensity"]  # shares QCTBoneDensityLib's adapters
        self.parent.contributors = ["BoneQCT developers"]
        self.parent.helpText = """
DXA-equivalent areal BMD (g/cm2) of the proximal femur from calibrated CT, with femoral neck, trochanter, intertrochanter and total hip regions (Cann et al. 2014). The hip CTXA pipeline (femur extraction, rotation to the DXA position, projection and ROIs) comes in a later release.
"""
        self.parent.acknowledgementText = """
Built on 3D Slicer's scripted module template; computations are in the Slicer-free
<code>boneqct</code> package.
"""


#
# HipCTXAParameterNode
#


@parameterNodeWrapper
class HipCTXAParameterNode:
    """The module's state, saved with the scene.

    inputVolume - CT volume in HU (or a BMD map from QCT Bone Density).
    """

    inputVolume: vtkMRMLScalarVolumeNode


#
# HipCTXAWidget
#


class HipCTXAWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: binds the .ui to the parameter node."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        """Load the .ui and create the logic (called once)."""
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/HipCTXA.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = HipCTXALogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.initializeParameterNode()

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

    def onSceneStartClose(self, caller, event) -> None:
        """The parameter node is about to be removed with the scene."""
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Recreate the parameter node if the module is shown while the scene is closed."""
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Make sure the parameter node exists and has an input volume if possible."""
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        """Bind the GUI to ``inputParameterNode`` (a HipCTXAParameterNode or None)."""
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)


#
# HipCTXALogic
#


class HipCTXALogic(ScriptedLoadableModuleLogic):
    """Scene-level operations of the module, usable from the Python console without the GUI."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        """The module's parameter node, wrapped with typed fields."""
        return HipCTXAParameterNode(super().getParameterNode())

    def volumeFromNode(self, volumeNode):
        """The selected volume as a core ``boneqct.volume.Volume`` (voxels copied, IJK->RAS kept)."""
        from HipCTXALib import volume_from_node

        return volume_from_node(volumeNode)


#
# HipCTXATest
#


class HipCTXATest(ScriptedLoadableModuleTest):
    """In-Slicer self-test: a digital phantom from the core passes through the scene unchanged."""

    def setUp(self) -> None:
        """Start from an empty scene."""
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        """Run all tests of the module."""
        self.setUp()
        self.test_PhantomVolumeReachesTheCore()

    def test_PhantomVolumeReachesTheCore(self) -> None:
        """The logic hands the core exactly the voxels and geometry that are in the scene."""
        import numpy as np
        from HipCTXALib import update_node_from_volume

        from boneqct.phantoms import make_spine_phantom
        from boneqct.volume import Volume

        self.delayDisplay("Digital phantom through the scene")
        phantom = make_spine_phantom()
        ct = phantom if isinstance(phantom, Volume) else phantom.volume
        node = update_node_from_volume(ct, name="phantom")
        volume = HipCTXALogic().volumeFromNode(node)
        np.testing.assert_allclose(volume.ijk_to_ras, ct.ijk_to_ras, atol=1e-9)
        np.testing.assert_array_equal(volume.array_kji, ct.array_kji)
        self.delayDisplay("Test passed")
